"""Crash safety of the real registry process: kill -9, restart on the same data dir, nothing changed.

Every wait has a deadline; every process started here is killed in a `finally`.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from k2.platform.errors import RegistryProcessError
from k2.platform.registry import RegistryProcess
from k2.platform.schemas import load_schema, load_schema_str
from k2.platform.validation import validate_quote

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    proc = RegistryProcess(tmp_path / "data")
    try:
        yield proc.start(timeout=30)
    finally:
        proc.kill()
    assert not proc.alive()


def snapshot(client: SchemaRegistryClient) -> dict[str, Any]:
    """Everything a client can observe: subjects, versions (deleted too), ids, schemas, configs."""
    out: dict[str, Any] = {"global": client.get_compatibility(), "subjects": {}}
    for subject in client.get_subjects(deleted=True):
        versions = {}
        for version in client.get_versions(subject, deleted=True):
            registered = client.get_version(subject, version, deleted=True)
            versions[version] = (registered.schema_id, registered.schema.schema_str)
        level = client.get_config(subject).compatibility_level if subject.startswith("cfg") else None
        out["subjects"][subject] = {
            "versions": versions,
            "live": client.get_versions(subject) if subject in client.get_subjects() else [],
            "level": level,
        }
    return out


def _quote_schema_with(extra: int) -> str:
    schema = load_schema("quote")
    schema["fields"] += [{"name": f"x{i}", "type": "long", "default": i} for i in range(extra)]
    return json.dumps(schema)


def test_kill_9_and_restart_loses_nothing(registry: RegistryProcess) -> None:
    client = SchemaRegistryClient({"url": registry.url})
    for extra in range(3):
        client.register_schema("quotes-value", Schema(_quote_schema_with(extra), "AVRO"))
    client.register_schema("trades-value", Schema(load_schema_str("trade"), "AVRO"))
    client.register_schema("cfg-trades-value", Schema(load_schema_str("trade"), "AVRO"))
    client.set_compatibility("cfg-trades-value", "FULL_TRANSITIVE")
    client.set_compatibility(level="FORWARD")
    client.delete_version("quotes-value", 2)
    ctx = SerializationContext("quotes", MessageField.VALUE)
    now_us = int(datetime.now(UTC).timestamp()) * 1_000_000
    quote = validate_quote(
        {
            "quote_id": "Q-1",
            "symbol": "EUR/USD",
            "exchange": "EBS",
            "asset_class": "fx",
            "bid_price": Decimal("1.08421"),
            "bid_size": "1000000",
            "ask_price": "1.08423",
            "ask_size": 2_000_000,
            "event_timestamp": now_us,
            "ingest_timestamp": now_us,
            "sequence_number": 1,
        }
    )
    # v1 of quotes-value is quote v2 as shipped (whitespace aside): the serializer finds it by lookup
    serializer = AvroSerializer(client, load_schema_str("quote"), conf={"auto.register.schemas": False})
    encoded = serializer(quote, ctx)
    assert int.from_bytes(encoded[1:5], "big") == client.get_version("quotes-value", 1).schema_id
    client.close()
    observer = SchemaRegistryClient({"url": registry.url})  # no cache: everything comes from the server
    before = snapshot(observer)
    observer.close()

    pid = registry.pid
    registry.kill()
    assert not registry.alive()
    registry.start(timeout=30)
    assert registry.pid != pid

    fresh = SchemaRegistryClient({"url": registry.url})
    assert snapshot(fresh) == before
    assert AvroDeserializer(fresh)(encoded, ctx) == quote
    ids = {sid for s in before["subjects"].values() for sid, _ in s["versions"].values()}
    new_id = fresh.register_schema("other-value", Schema('"string"', "AVRO"))
    assert new_id == max(ids) + 1  # ids continue, never reused
    fresh.close()


def test_every_acknowledged_registration_survives_kill_9(registry: RegistryProcess) -> None:
    """Writers hammer the registry; kill -9 mid-stream; everything acked before the kill is there."""
    acked: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=5)
        i = 0
        while not stop.is_set():
            subject = f"w{n}-{i}"
            body = json.dumps({"schema": json.dumps({"type": "enum", "name": f"E{n}_{i}", "symbols": ["A"]})})
            try:
                conn.request(
                    "POST",
                    f"/subjects/{subject}/versions",
                    body=body,
                    headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
                )
                response = conn.getresponse()
                payload = json.loads(response.read())
            except (OSError, http.client.HTTPException, ValueError):
                return  # the server died under us: this one was never acknowledged
            if response.status == 200:
                with lock:
                    acked[subject] = payload["id"]
            i += 1

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 200:
        assert time.monotonic() < deadline, f"only {len(acked)} registrations acked in 20s"
        time.sleep(0.01)
    registry.kill()
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)

    registry.start(timeout=30)
    client = SchemaRegistryClient({"url": registry.url})
    for subject, schema_id in acked.items():
        assert client.get_latest_version(subject).schema_id == schema_id, subject
    assert len(set(acked.values())) == len(acked)
    client.close()


def test_second_registry_on_the_same_data_dir_is_refused(registry: RegistryProcess, tmp_path: Path) -> None:
    twin = RegistryProcess(registry.data_dir, log_path=tmp_path / "twin.log")
    try:
        with pytest.raises(RegistryProcessError) as info:
            twin.start(timeout=30)
        assert "exited with status 2" in str(info.value)
        assert "in use by another registry process" in str(info.value)
    finally:
        twin.kill()


def test_sigterm_stops_cleanly_despite_idle_keepalive_clients(registry: RegistryProcess) -> None:
    idle = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=5)
    idle.request("GET", "/subjects")
    assert idle.getresponse().read() == b"[]"  # the connection stays open, its handler thread waits
    started = time.monotonic()
    registry.terminate(timeout=10)
    assert time.monotonic() - started < 5
    idle.close()
    assert not registry.alive()
    assert registry._proc is not None and registry._proc.returncode == 0
    assert "stopped" in registry.log_tail()
