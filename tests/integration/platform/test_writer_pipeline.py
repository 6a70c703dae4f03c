"""The Iceberg writer on the embedded stack: round trip, dead letters, crashes, outages, shutdown."""

from __future__ import annotations

import json
import random
import signal
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from tests.integration.platform.pipeline_helpers import (
    SYMBOLS,
    fresh_config,
    make_quote,
    make_trade,
    read_topic,
    row_count,
    running_stack,
    start_writer_process,
    table_rows,
    wait_until,
)

from k2.platform.config import PlatformConfig
from k2.platform.deadletter import DeadLetter
from k2.platform.errors import CatalogUnavailable, KafkaUnavailable, StorageUnavailable
from k2.platform.producer import MarketDataProducer, Status
from k2.platform.schemas import load_schema, load_schema_str
from k2.platform.validation import validate_quote, validate_trade
from k2.platform.writer import CRASH_EXIT_CODE, CRASH_HOOK_ENV, IcebergWriter
from k2.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack() as running:
        yield running


def produce_all(config: PlatformConfig, records: list[dict[str, Any]], kind: str = "trade") -> None:
    with MarketDataProducer(config) as producer:
        send = producer.produce_trade if kind == "trade" else producer.produce_quote
        for record in records:
            send(record)
        assert producer.flush(30) == 0


def ids_in(config: PlatformConfig, kind: str = "trade") -> list[str]:
    column = f"{kind}_id"
    return [i for ac in ("crypto", "equities") for i in table_rows(config, kind, ac).column(column).to_pylist()]


def test_round_trip_writes_exactly_the_records_produced(stack: LocalStack) -> None:
    config = fresh_config(stack)
    trades = [make_trade(i, symbol) for i in range(600) for symbol in SYMBOLS]
    quotes = [make_quote(i) for i in range(300)]
    acked: list[Any] = []
    with MarketDataProducer(config, observer=acked.append) as producer:
        for trade in trades:
            producer.produce_trade(trade)
        for quote in quotes:
            producer.produce_quote(quote)
        assert producer.flush(30) == 0
    assert sum(e.status is Status.ACKNOWLEDGED for e in acked) == len(trades) + len(quotes)

    writer = IcebergWriter(config, group_id="rt", batch_max_rows=1000, batch_max_seconds=0.3).start()
    try:
        wait_until(lambda: row_count(config, "trade") == len(trades), 60, "every trade in Iceberg")
        wait_until(lambda: row_count(config, "quote", ("crypto",)) == len(quotes), 30, "every quote in Iceberg")
        assert writer.health().healthy
    finally:
        writer.stop()

    expected = {t["trade_id"]: validate_trade(t) for t in trades}
    for asset_class in ("crypto", "equities"):
        for row in table_rows(config, "trade", asset_class).to_pylist():
            want = expected.pop(row.pop("trade_id"))
            assert row.pop("kafka_offset") >= 0 and row.pop("kafka_partition") in (0, 1, 2)
            assert row == {k: v for k, v in want.items() if k != "trade_id"}
    assert expected == {}
    want_quotes = {q["quote_id"]: validate_quote(q) for q in quotes}
    got_quotes = {r["quote_id"]: r for r in table_rows(config, "quote", "crypto").to_pylist()}
    assert got_quotes.keys() == want_quotes.keys()
    assert all(got_quotes[k][f] == v for k, q in want_quotes.items() for f, v in q.items())


def raw_avro(config: PlatformConfig, schema_str: str, subject: str, record: dict[str, Any]) -> bytes:
    """Bytes a rogue producer could write: framed Avro that skips K2's validation."""
    registry = SchemaRegistryClient(config.registry_conf())
    serializer = AvroSerializer(
        registry, schema_str, conf={"subject.name.strategy": lambda ctx, name: subject, "auto.register.schemas": True}
    )
    return serializer(record, SerializationContext(config.topics.trades, MessageField.VALUE))


def test_bad_messages_are_dead_lettered_and_the_writer_keeps_going(stack: LocalStack) -> None:
    config = fresh_config(stack)
    good = validate_trade(make_trade(1))
    wrong_type_schema = load_schema("trade")
    wrong_type_schema["fields"][4]["type"] = "string"  # price as a string
    bad = {
        "undecodable": b"\xde\xad\xbe\xef not avro at all",
        "unknown_schema_id": struct.pack(">bI", 0, 987_654) + b"\x02\x04ab",
        "asset_class_mismatch": raw_avro(
            config, load_schema_str("trade"), f"{config.topics.trades}-value", {**good, "asset_class": "equities"}
        ),
        "wrong_type": raw_avro(  # Avro resolves string -> bytes, so validation sees bytes where a decimal belongs
            config,
            json.dumps(wrong_type_schema),
            "rogue-value",
            {**good, "price": "12.5", "quantity": good["quantity"]},
        ),
        "empty_value": b"",
    }
    raw = Producer(config.kafka_base())
    for value in bad.values():
        raw.produce(config.topics.trades, value, b"BTC-USD")
    assert raw.flush(10) == 0
    raw.close()
    produce_all(config, [make_trade(i) for i in range(50)])

    writer = IcebergWriter(config, group_id="dlq", batch_max_seconds=0.2).start()
    try:
        wait_until(lambda: row_count(config, "trade") == 50, 60, "the 50 good trades behind the bad ones")
        letters = [DeadLetter.from_json(m.value()) for m in read_topic(config, config.topics.deadletter, len(bad))]
        assert sorted(letter.reason_code for letter in letters) == sorted(bad)
        for letter in letters:
            assert letter.stage == "writer" and letter.source_topic == config.topics.trades and letter.reason
            assert letter.raw_payload() == bad[letter.reason_code]
        by_code = {letter.reason_code: letter for letter in letters}
        assert by_code["unknown_schema_id"].schema_id == 987_654
        assert by_code["asset_class_mismatch"].field == "asset_class"
        assert by_code["wrong_type"].field == "price"
        assert writer.health().healthy and writer.health().dead_lettered == len(bad)
    finally:
        writer.stop()


def test_kill_9_and_crash_between_iceberg_and_kafka_commit_lose_and_duplicate_nothing(
    stack: LocalStack, tmp_path: Path
) -> None:
    config = fresh_config(stack)
    rng = random.Random(20261127)
    log = tmp_path / "writer.log"
    produced: list[str] = []

    def produce(count: int) -> None:
        batch = [make_trade(len(produced) + i, rng.choice(list(SYMBOLS))) for i in range(count)]
        produce_all(config, batch)
        produced.extend(t["trade_id"] for t in batch)

    produce(1500)
    # 1) the test hook exits right after an Iceberg commit, before the Kafka offsets are committed
    for nth in (1, 2):
        proc = start_writer_process(config, log, group="crash", extra_env={CRASH_HOOK_ENV: str(nth)})
        assert proc.wait(60) == CRASH_EXIT_CODE, log.read_text()[-3000:]
        produce(300)
    # 2) SIGKILL at random moments while more data arrives
    for _ in range(3):
        started = log.read_text().count("assigned")
        proc = start_writer_process(config, log, group="crash")
        try:
            wait_until(lambda n=started: log.read_text().count("assigned") > n, 30, "the writer to start")
            produce(300)
            time.sleep(rng.uniform(0.0, 1.0))  # a random kill point, not a synchronisation
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    # 3) a last writer finishes the job
    proc = start_writer_process(config, log, group="crash")
    try:
        wait_until(lambda: len(ids_in(config)) >= len(produced), 90, "every trade after the crashes", interval=0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
    written = ids_in(config)
    assert len(written) == len(produced), "duplicates" if len(written) > len(produced) else "loss"
    assert sorted(written) == sorted(produced)


def test_graceful_stop_flushes_what_is_buffered(stack: LocalStack) -> None:
    config = fresh_config(stack)
    produce_all(config, [make_trade(i, "AAPL") for i in range(300)])
    writer = IcebergWriter(config, group_id="stop", batch_max_rows=10_000, batch_max_seconds=600).start()
    wait_until(lambda: writer.health().buffered_rows == 300, 30, "300 rows buffered (not yet due)")
    assert row_count(config, "trade", ("equities",)) == 0
    writer.stop()
    assert writer.health().status == "stopped"
    assert row_count(config, "trade", ("equities",)) == 300
    assert writer.health().kafka_committed[config.topics.trades]


@pytest.mark.parametrize(("service", "error"), [("s3", StorageUnavailable), ("postgres", CatalogUnavailable)])
def test_outage_degrades_the_writer_which_resumes_without_loss(
    stack: LocalStack, service: str, error: type[Exception]
) -> None:
    config = fresh_config(stack)
    produce_all(config, [make_trade(i, "MSFT") for i in range(200)])
    writer = IcebergWriter(config, group_id="outage", batch_max_seconds=0.2, retry_max=1.0).start()
    try:
        wait_until(lambda: row_count(config, "trade", ("equities",)) == 200, 60, "the first 200 rows")
        stack.stop_service(service)
        try:
            produce_all(config, [make_trade(200 + i, "MSFT") for i in range(200)])
            health = wait_until(lambda: writer.health() if writer.health().error else None, 60, "a typed error")
            assert health.status == "degraded" and isinstance(health.error, error), health
            assert "Remedy" in str(health.error)
        finally:
            stack.start_service(service)
        wait_until(lambda: writer.health().healthy and writer.health().buffered_rows == 0, 60, "recovery")
        wait_until(lambda: row_count(config, "trade", ("equities",)) == 400, 30, "all 400 rows")
        assert sorted(ids_in(config)) == sorted(f"T-MSFT-{i}" for i in range(400))
    finally:
        writer.stop()


def test_a_kafka_outage_shows_in_health_and_the_writer_carries_on(stack: LocalStack) -> None:
    config = fresh_config(stack)
    produce_all(config, [make_trade(i, "AAPL") for i in range(100)])
    writer = IcebergWriter(config, group_id="kafka-outage", batch_max_seconds=0.2).start()
    try:
        wait_until(lambda: row_count(config, "trade", ("equities",)) == 100, 60, "the first 100 rows")
        stack.stop_service("kafka")
        try:
            health = wait_until(lambda: writer.health() if writer.health().error else None, 30, "a typed error")
            assert health.status == "degraded" and isinstance(health.error, KafkaUnavailable), health
        finally:
            stack.start_service("kafka")
        produce_all(config, [make_trade(100 + i, "AAPL") for i in range(100)])
        wait_until(lambda: row_count(config, "trade", ("equities",)) == 200, 60, "the rows produced after")
        wait_until(lambda: writer.health().healthy, 30, "health back to running")
    finally:
        writer.stop()
    assert sorted(ids_in(config)) == sorted(f"T-AAPL-{i}" for i in range(200))
