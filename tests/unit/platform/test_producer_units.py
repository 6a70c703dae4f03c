"""MarketDataProducer without a broker: rejection, backpressure, close, registry outage; config and dead letters."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka.schema_registry._sync.mock_schema_registry_client import MockSchemaRegistryClient

from k2.platform.config import ENV_VARS, PlatformConfig, Topics
from k2.platform.deadletter import DeadLetter, jsonable
from k2.platform.errors import (
    BackpressureError,
    PlatformError,
    ProducerClosed,
    RecordRejected,
    SchemaRegistryUnavailable,
    ValidationError,
)
from k2.platform.producer import DeliveryEvent, MarketDataProducer, Status

NOWHERE = "127.0.0.1:9"  # loopback port nothing listens on: records queue up and are never acknowledged


def config(**changes: Any) -> PlatformConfig:
    values = {
        "kafka_bootstrap": NOWHERE,
        "schema_registry_url": "http://127.0.0.1:9",
        "s3_endpoint": "http://127.0.0.1:9",
        "s3_access_key": "key",
        "s3_secret_key": "secret",
        "s3_bucket": "warehouse",
        "postgres_uri": "postgresql://k2:pw@127.0.0.1:9/k2",
        "registry_timeout": 1.0,
    }
    return PlatformConfig(**{**values, **changes})


def trade(i: int = 1, **changes: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp() * 1_000_000)
    record = {
        "trade_id": f"T-{i}", "symbol": "BTC-USD", "exchange": "COINBASE", "asset_class": "crypto",
        "price": Decimal("50000.5"), "quantity": Decimal("0.25"), "side": "BUY",
        "event_timestamp": now, "ingest_timestamp": now, "sequence_number": i,
    }  # fmt: skip
    return {**record, **changes}


def producer(events: list[DeliveryEvent], **kwargs: Any) -> MarketDataProducer:
    return MarketDataProducer(
        config(), observer=events.append, registry=MockSchemaRegistryClient({"url": "mock://unit"}), **kwargs
    )


def test_an_invalid_record_is_rejected_typed_and_dead_lettered() -> None:
    events: list[DeliveryEvent] = []
    p = producer(events)
    with pytest.raises(RecordRejected) as caught:
        p.produce_trade(trade(7, price=Decimal("1.123456789")))
    error = caught.value
    assert isinstance(error, ValidationError) and isinstance(error, PlatformError)
    assert (error.field, error.reason_code, error.record_id) == ("price", "too_many_fraction_digits", "T-7")
    assert error.dead_letter_topic == "market.deadletter" and "Remedy" in str(error)
    assert [(e.status, e.record_id, e.reason_code, e.sequence_number) for e in events] == [
        (Status.REJECTED, "T-7", "too_many_fraction_digits", 7)
    ]
    assert p.pending() == 1  # the dead letter, waiting for Kafka
    assert p.stats["rejected"] == 1 and p.stats["sent"] == 0
    p.close(0.1)


def test_a_full_buffer_raises_backpressure_after_the_bounded_wait() -> None:
    events: list[DeliveryEvent] = []
    p = producer(events, max_buffered_messages=10, block_timeout=0.3)
    for i in range(10):
        p.produce_trade(trade(i))
    started = time.monotonic()
    with pytest.raises(BackpressureError, match="buffer full") as caught:
        p.produce_trade(trade(10))
    assert 0.3 <= time.monotonic() - started < 2.0
    assert isinstance(caught.value, PlatformError) and "Remedy" in str(caught.value)
    assert [(e.status, e.record_id) for e in events] == [(Status.FAILED, "T-10")]
    # the ten buffered records are all still waiting (librdkafka's count may include one request of its own:
    # 11 once in CI, with no broker to send to)
    assert p.flush(0.1) in (10, 11)
    p.close(0.1)


def test_close_reports_what_was_never_acknowledged_and_refuses_more() -> None:
    events: list[DeliveryEvent] = []
    p = producer(events)
    for i in range(5):
        p.produce_trade(trade(i))
    assert p.close(0.2) == 5
    assert sorted(e.record_id for e in events) == [f"T-{i}" for i in range(5)]
    assert {e.status for e in events} <= {Status.FAILED, Status.UNKNOWN}  # never acknowledged, never silent
    with pytest.raises(ProducerClosed):
        p.produce_trade(trade(9))
    assert p.flush() == 0


def test_a_registry_outage_is_a_typed_error_and_nothing_is_sent() -> None:
    events: list[DeliveryEvent] = []
    p = MarketDataProducer(config(), observer=events.append)  # the real client, pointed at a closed port
    with pytest.raises(SchemaRegistryUnavailable, match="schema-registry") as caught:
        p.produce_trade(trade(3))
    assert "Remedy" in str(caught.value)
    assert [(e.status, e.record_id) for e in events] == [(Status.FAILED, "T-3")]
    assert p.pending() == 0
    p.close(0.1)


def test_an_observer_that_raises_does_not_break_the_producer() -> None:
    def broken(event: DeliveryEvent) -> None:
        raise RuntimeError("observer bug")

    p = MarketDataProducer(config(), observer=broken, registry=MockSchemaRegistryClient({"url": "mock://unit"}))
    with pytest.raises(RecordRejected):
        p.produce_trade(trade(1, symbol="BTC-USD", asset_class="equities"))
    p.produce_trade(trade(2))
    p.close(0.1)


def test_config_from_env_names_what_is_missing_and_round_trips() -> None:
    with pytest.raises(KeyError, match="K2_KAFKA_BOOTSTRAP_SERVERS"):
        PlatformConfig.from_env({})
    original = config(topics=Topics.with_prefix("run1"), namespace="ns1")
    again = PlatformConfig.from_env(original.as_env())
    assert again.topics == Topics("run1.trades.v2", "run1.quotes.v2", "run1.deadletter")
    assert again.namespace == "ns1" and again.kafka_bootstrap == NOWHERE
    assert set(ENV_VARS.values()) <= set(original.as_env())
    assert original.sqlalchemy_uri() == "postgresql+psycopg://k2:pw@127.0.0.1:9/k2?connect_timeout=5"
    props = original.catalog_properties()
    assert props["warehouse"] == "s3://warehouse/warehouse" and props["s3.force-virtual-addressing"] == "false"


def test_dead_letters_are_json_with_exact_decimals_and_raw_bytes() -> None:
    error = ValidationError("price", "too precise", reason_code="too_many_fraction_digits", record_id="T-1")
    letter = DeadLetter.from_validation("producer", "trade", error, trade(1, price=Decimal("0.123456789")))
    again = DeadLetter.from_json(letter.to_json())
    assert again == letter and again.payload["price"] == "0.123456789"
    raw = DeadLetter.from_validation("writer", "trade", error, None).with_raw(b"\x00\x00\x00\x00\x07rest")
    assert raw.schema_id == 7 and DeadLetter.from_json(raw.to_json()).raw_payload() == b"\x00\x00\x00\x00\x07rest"
    assert jsonable({"t": datetime(2026, 1, 1, tzinfo=UTC), "b": b"\x01"}) == {
        "t": "2026-01-01T00:00:00+00:00",
        "b": {"base64": "AQ=="},
    }
