"""confluent-kafka's own SchemaRegistryClient, AvroSerializer and AvroDeserializer against the registry.

The registry runs as a real subprocess (`python -m k2.platform.registry`) on a free port with a
temporary data dir; each test uses its own subjects, so they share one process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from k2.platform.registry import RegistryProcess
from k2.platform.schemas import load_schema, load_schema_str
from k2.platform.validation import validate_trade

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NOW_US = int(datetime.now(UTC).timestamp()) * 1_000_000


def make_trade(**changes: Any) -> dict[str, Any]:
    record = {
        "trade_id": "T-1",
        "symbol": "ETH-USDT",
        "exchange": "BINANCE",
        "asset_class": "crypto",
        "price": Decimal("3456.78901234"),
        "quantity": "0.00100000",
        "side": "SELL",
        "event_timestamp": NOW_US - 2_000_000,
        "ingest_timestamp": NOW_US,
        "sequence_number": 42,
        "trade_conditions": ["T"],
        "source_sequence": 9_000_000_001,
    }
    return validate_trade({**record, **changes})


def evolved_trade_schema() -> str:
    schema = load_schema("trade")
    schema["fields"].append({"name": "venue_flags", "type": ["null", "string"], "default": None})
    return json.dumps(schema)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    proc = RegistryProcess(tmp_path_factory.mktemp("registry"))
    try:
        yield proc.start(timeout=30)
    finally:
        proc.kill()
    assert not proc.alive()


@pytest.fixture
def client(registry: RegistryProcess) -> Iterator[SchemaRegistryClient]:
    sr = SchemaRegistryClient({"url": registry.url, "max.retries": 0})
    yield sr
    sr.close()


def test_serialize_and_deserialize_a_trade(client: SchemaRegistryClient) -> None:
    ctx = SerializationContext("trades-a", MessageField.VALUE)
    serializer = AvroSerializer(client, load_schema_str("trade"))
    deserializer = AvroDeserializer(client)
    trade = make_trade()
    data = serializer(trade, ctx)
    registered = client.get_latest_version("trades-a-value")
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == registered.schema_id
    assert deserializer(data, ctx) == trade
    assert client.register_schema("trades-a-value", Schema(load_schema_str("trade"), "AVRO")) == registered.schema_id
    assert json.loads(client.get_schema(registered.schema_id).schema_str) == load_schema("trade")


def test_compatible_evolution(client: SchemaRegistryClient) -> None:
    subject = "trades-b-value"
    ctx = SerializationContext("trades-b", MessageField.VALUE)
    v1_id = client.register_schema(subject, Schema(load_schema_str("trade"), "AVRO"))
    old_bytes = AvroSerializer(client, load_schema_str("trade"))(make_trade(), ctx)
    assert client.test_compatibility(subject, Schema(evolved_trade_schema(), "AVRO"))
    v2_id = client.register_schema(subject, Schema(evolved_trade_schema(), "AVRO"))
    assert v2_id != v1_id
    assert client.get_versions(subject) == [1, 2]
    assert client.get_latest_version(subject).version == 2

    # a new reader decodes old data, filling the default
    new_reader = AvroDeserializer(client, schema_str=evolved_trade_schema())
    assert new_reader(old_bytes, ctx) == {**make_trade(), "venue_flags": None}
    # new data decodes with its own writer schema
    new_bytes = AvroSerializer(client, evolved_trade_schema())({**make_trade(), "venue_flags": "X"}, ctx)
    assert int.from_bytes(new_bytes[1:5], "big") == v2_id
    assert AvroDeserializer(client)(new_bytes, ctx)["venue_flags"] == "X"


def test_incompatible_change_is_refused_with_409(client: SchemaRegistryClient) -> None:
    subject = "trades-c-value"
    client.register_schema(subject, Schema(load_schema_str("trade"), "AVRO"))
    broken = load_schema("trade")
    broken["fields"].append({"name": "venue", "type": "string"})  # no default: old data lacks it
    with pytest.raises(SchemaRegistryError) as info:
        client.register_schema(subject, Schema(json.dumps(broken), "AVRO"))
    assert info.value.http_status_code == 409 and info.value.error_code == 409
    assert "venue" in info.value.error_message
    assert client.get_versions(subject) == [1]
    assert client.test_compatibility(subject, Schema(json.dumps(broken), "AVRO")) is False
    scale_change = load_schema("trade")
    scale_change["fields"][4]["type"]["scale"] = 4
    with pytest.raises(SchemaRegistryError) as info:
        client.register_schema(subject, Schema(json.dumps(scale_change), "AVRO"))
    assert info.value.error_code == 409


def test_compatibility_levels(client: SchemaRegistryClient) -> None:
    subject = "trades-d-value"
    assert client.get_compatibility() == "BACKWARD"
    client.register_schema(subject, Schema(evolved_trade_schema(), "AVRO"))
    client.set_compatibility(subject, "FORWARD")
    assert client.get_compatibility(subject) == "FORWARD"
    # dropping the optional field is fine for FORWARD (old readers have its default)...
    assert client.register_schema(subject, Schema(load_schema_str("trade"), "AVRO")) > 0
    client.set_compatibility(subject, "NONE")
    unrelated = json.dumps({"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]})
    client.register_schema(subject, Schema(unrelated, "AVRO"))
    client.set_compatibility(subject, "FULL_TRANSITIVE")
    assert client.get_config(subject).compatibility_level.value == "FULL_TRANSITIVE"
    with pytest.raises(SchemaRegistryError) as info:
        client.register_schema(subject, Schema(load_schema_str("quote"), "AVRO"))
    assert info.value.error_code == 409
    with pytest.raises(SchemaRegistryError) as info:
        client.set_compatibility(subject, "SIDEWAYS")
    assert info.value.error_code == 42203
    client.delete_config(subject)
    assert client.get_compatibility() == "BACKWARD"


def test_delete_soft_and_permanent(client: SchemaRegistryClient) -> None:
    subject = "trades-e-value"
    first = client.register_schema(subject, Schema(load_schema_str("trade"), "AVRO"))
    client.register_schema(subject, Schema(evolved_trade_schema(), "AVRO"))
    assert client.delete_version(subject, 1) == 1
    assert client.get_versions(subject) == [2]
    assert client.get_version(subject, 1, deleted=True).schema_id == first
    assert client.get_schema(first).schema_str  # still readable by id for old messages
    assert client.delete_subject(subject) == [2]
    assert subject not in client.get_subjects()
    assert subject in client.get_subjects(deleted=True)
    assert sorted(client.delete_subject(subject, permanent=True)) == [1, 2]
    with pytest.raises(SchemaRegistryError) as info:
        client.get_versions(subject)
    assert info.value.error_code == 40401


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda c: c.get_schema(987654), 40403),
        (lambda c: c.get_latest_version("no-such-subject"), 40401),
        (lambda c: c.get_version("trades-a-value", 99), 40402),
        (lambda c: c.register_schema("x-value", Schema('{"type": "record"}', "AVRO")), 42201),
        (lambda c: c.lookup_schema("no-such-subject", Schema('"string"', "AVRO")), 40401),
    ],
    ids=["schema", "subject", "version", "invalid", "lookup"],
)
def test_errors_reach_the_client_with_confluent_codes(client: SchemaRegistryClient, call: Any, code: int) -> None:
    with pytest.raises(SchemaRegistryError) as info:
        call(client)
    assert info.value.error_code == code


def test_health_endpoint_and_log(registry: RegistryProcess) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{registry.url}/", timeout=5) as response:
        assert response.status == 200 and json.load(response) == {}
    assert f"ready on {registry.url}" in Path(registry.log_path).read_text()
