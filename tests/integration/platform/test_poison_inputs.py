"""Poison input on the real broker, registry, catalog and object store (issue #10, part 4): every produce call
ends in exactly one outcome, and the writer keeps writing valid records behind any message it cannot process,
losing and duplicating nothing. Hypothesis drives the inputs (bounded examples); the issue's cases are pinned."""

from __future__ import annotations

import itertools
import json
import struct
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.integration.platform.pipeline_helpers import (
    fresh_config,
    make_trade,
    read_topic,
    running_stack,
    wait_until,
)

from k2.platform import iceberg_tables as tables
from k2.platform.consumer import RecordDecoder
from k2.platform.deadletter import MAX_LETTER_BYTES, DeadLetter
from k2.platform.errors import PlatformError, RecordRejected
from k2.platform.producer import DeliveryEvent, MarketDataProducer, Status
from k2.platform.schemas import load_schema_str
from k2.platform.validation import validate_trade
from k2.platform.writer import IcebergWriter
from k2.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

HUGE = "x" * 2_000_000
FIELDS = [*validate_trade(make_trade(0)), "not_a_field"]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(exclude_categories=()), max_size=24),  # lone surrogates included
    st.binary(max_size=16),
    st.lists(st.text(max_size=20), max_size=40),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.sampled_from(["ESZ\u0666", "XNAS\n", "\ud800", HUGE, "0." + "0" * 2_000_000 + "1", "1e999999", "NaN", "-0"]),
)
MUTATIONS = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(FIELDS), VALUES),
    st.tuples(st.just("delete"), st.sampled_from(FIELDS[:-1])),
    st.tuples(st.just("whole"), st.one_of(st.none(), st.text(max_size=5), st.lists(st.integers(), max_size=2))),
    st.tuples(st.just("valid")),
)
SETTINGS = {"deadline": None, "suppress_health_check": list(HealthCheck), "database": None}


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack() as running:
        yield running


def mutate(trade: dict[str, Any], mutation: tuple[Any, ...]) -> Any:
    if mutation[0] == "set":
        return {**trade, mutation[1]: mutation[2]}
    if mutation[0] == "delete":
        return {k: v for k, v in trade.items() if k != mutation[1]}
    return mutation[1] if mutation[0] == "whole" else trade


def strict_json(data: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(data, parse_constant=refuse)


def test_every_produce_call_ends_in_exactly_one_outcome(stack: LocalStack) -> None:
    config = fresh_config(stack)
    events: list[DeliveryEvent] = []
    producer = MarketDataProducer(config, observer=events.append)
    numbers = itertools.count()
    acknowledged: list[str] = []
    rejected = 0

    @settings(max_examples=120, **SETTINGS)
    @example(("set", "trade_id", "T-\ud800"))  # escaped as an untyped UnicodeEncodeError, without an event
    @example(("set", "exchange", HUGE))  # a 2 MB field: KafkaException MSG_SIZE_TOO_LARGE, without an event
    @example(("set", "not_a_field", HUGE))
    @given(mutation=MUTATIONS)
    def one_call(mutation: tuple[Any, ...]) -> None:
        nonlocal rejected
        n = next(numbers)
        record = mutate(make_trade(n, "BTC-USD", trade_id=f"P-{n}"), mutation)
        before = len(events)
        raised: BaseException | None = None
        try:
            returned = producer.produce_trade(record)
        except Exception as exc:
            raised = exc
        assert producer.flush(30) == 0
        mine = events[before:]
        assert len(mine) == 1, (mutation, raised, mine)
        event = mine[0]
        given_id = record.get("trade_id") if isinstance(record, dict) else None
        assert event.record_id == (given_id if isinstance(given_id, str) else None)  # a ledger can match it
        if raised is None:
            assert event.status is Status.ACKNOWLEDGED and event.record_id == returned, event
            acknowledged.append(returned)
            return
        assert isinstance(raised, PlatformError), f"untyped {type(raised).__name__}: {raised}"
        str(raised).encode("utf-8")  # printable and loggable
        assert event.status in (Status.REJECTED, Status.FAILED), event
        if isinstance(raised, RecordRejected):
            assert event.status is Status.REJECTED and raised.dead_letter_topic == config.topics.deadletter
            rejected += 1

    try:
        one_call()
    finally:
        producer.close()
    assert rejected and acknowledged
    decoder = RecordDecoder(config)
    on_topic = read_topic(config, config.topics.trades, len(acknowledged))
    read = Counter(decoder.decode("trade", m.value())[0]["trade_id"] for m in on_topic)
    assert read == Counter(acknowledged), "an acknowledged record is missing or twice on the topic"
    letters = read_topic(config, config.topics.deadletter, rejected)
    assert len(letters) == rejected
    for message in letters:
        assert len(message.value()) <= MAX_LETTER_BYTES
        strict_json(message.value())


# ---- the writer ------------------------------------------------------------------------------------------


def framed(schema_id: int, body: bytes) -> bytes:
    return struct.pack(">bI", 0, schema_id) + body


def poison_messages(trade_schema_id: int, rogue: bytes) -> st.SearchStrategy[bytes | None]:
    """Messages the writer cannot turn into rows, of every kind it must dead-letter."""
    return st.one_of(
        st.binary(max_size=64),  # garbage, including empty
        st.none(),  # a tombstone
        st.just(b"\xee" * 800_000),  # the ~800 KB undecodable message that stopped the writer
        st.builds(framed, st.integers(10**6, 2**31 - 1), st.binary(max_size=32)),  # unknown schema id
        st.builds(framed, st.just(trade_schema_id), st.binary(max_size=48)),  # our schema, a broken body
        st.just(rogue),  # valid Avro of a record that fails validation (asset class vs symbol)
    )


class PoisonBench:
    """One scenario's topics: poison and valid trades interleaved on one partition, then a writer over them."""

    def __init__(self, stack: LocalStack) -> None:
        self.config = fresh_config(stack)
        self.raw = Producer(self.config.kafka_base())
        self.producer = MarketDataProducer(self.config)
        self.valid: list[str] = []
        self.poison_at: list[tuple[int, int]] = []
        registry = SchemaRegistryClient(self.config.registry_conf())
        serializer = AvroSerializer(registry, load_schema_str("trade"))
        ctx = SerializationContext(self.config.topics.trades, MessageField.VALUE)
        rogue = {**validate_trade(make_trade(0, "BTC-USD")), "asset_class": "equities"}
        self.rogue = serializer(rogue, ctx)
        self.schema_id = struct.unpack(">I", self.rogue[1:5])[0]
        self.catalog = tables.build_catalog(self.config)  # one connection, set up before any writer races it

    def poison(self, value: bytes | None) -> None:
        def landed(err: Any, msg: Any) -> None:
            assert err is None, err
            self.poison_at.append((msg.partition(), msg.offset()))

        self.raw.produce(self.config.topics.trades, value, b"BTC-USD", on_delivery=landed)
        assert self.raw.flush(30) == 0

    def trades(self, count: int) -> None:
        for _ in range(count):
            n = len(self.valid)
            self.valid.append(self.producer.produce_trade(make_trade(n, "BTC-USD", trade_id=f"V-{n}")))
        assert self.producer.flush(30) == 0

    def writer(self, group: str = "poison") -> IcebergWriter:
        return IcebergWriter(self.config, group_id=group, batch_max_seconds=0.2, assign_all=True).start()

    def written(self) -> list[str]:
        table = tables.open_table(self.catalog, self.config.namespace, "trade", "crypto", create=False)
        return [] if table is None else table.scan().to_arrow().column("trade_id").to_pylist()

    def wait_written(self, writer: IcebergWriter, dead: int, timeout: float = 60) -> None:
        def done() -> bool:
            health = writer.health()
            return (
                health.status == "running" and health.dead_lettered >= dead and len(self.written()) >= len(self.valid)
            )

        wait_until(done, timeout, f"{len(self.valid)} rows and {dead} dead letters", interval=0.3)

    def letters(self) -> list[DeadLetter]:
        messages = read_topic(self.config, self.config.topics.deadletter, len(self.poison_at))
        for message in messages:
            assert len(message.value()) <= MAX_LETTER_BYTES
            strict_json(message.value())
        return [DeadLetter.from_json(m.value()) for m in messages]

    def close(self) -> None:
        self.producer.close()
        self.raw.flush(5)
        self.catalog.engine.dispose()


def test_an_800kb_undecodable_message_is_dead_lettered_and_the_writer_and_its_restart_go_on(stack: LocalStack) -> None:
    bench = PoisonBench(stack)
    try:
        bench.trades(10)
        bench.poison(b"\xee" * 800_000)
        bench.trades(10)
        writer = bench.writer()
        try:
            bench.wait_written(writer, dead=1, timeout=45)
        finally:
            writer.stop()
        bench.trades(10)  # a restart resumes past the poison message instead of dying on it
        writer = bench.writer()
        try:
            bench.wait_written(writer, dead=0, timeout=45)
        finally:
            writer.stop()
        assert Counter(bench.written()) == Counter(bench.valid)
        (letter,) = bench.letters()
        assert letter.truncated and letter.payload_size == 800_000 and letter.reason_code == "undecodable"
        where = (letter.source_topic, (letter.source_partition, letter.source_offset))
        assert where == (bench.config.topics.trades, bench.poison_at[0])
    finally:
        bench.close()


def test_the_writer_keeps_writing_valid_records_behind_any_poison(stack: LocalStack) -> None:
    schema = PoisonBench(stack)  # to learn the registered schema id and a rogue record once
    schema.close()

    @settings(max_examples=5, **SETTINGS)
    @example(poison=[b"\xee" * 800_000, None])
    @given(poison=st.lists(poison_messages(schema.schema_id, schema.rogue), min_size=1, max_size=4))
    def one_topic(poison: list[bytes | None]) -> None:
        bench = PoisonBench(stack)
        try:
            bench.trades(3)
            for value in poison:
                bench.poison(value)
                bench.trades(3)
            writer = bench.writer()
            try:
                bench.wait_written(writer, dead=len(poison))
                assert writer.health().dead_lettered == len(poison)
            finally:
                writer.stop()
            assert Counter(bench.written()) == Counter(bench.valid), "a valid record was lost or duplicated"
            letters = bench.letters()
            assert sorted((x.source_partition, x.source_offset) for x in letters) == sorted(bench.poison_at)
            assert all(
                x.stage == "writer" and x.reason and x.source_topic == bench.config.topics.trades for x in letters
            )
        finally:
            bench.close()

    one_topic()


def test_a_row_arrow_refuses_is_dead_lettered_and_the_batch_written(stack: LocalStack) -> None:
    """A FAKE validator lets a value through that Arrow refuses (the real one never does): the writer must
    dead-letter that row with its offsets and write the rest, not retry the batch forever."""
    bench = PoisonBench(stack)
    try:
        bench.trades(6)
        writer = IcebergWriter(bench.config, group_id="convert", batch_max_seconds=0.2, assign_all=True)
        real = writer._decoder._validators["trade"]

        def fake(record: dict[str, Any], **options: Any) -> dict[str, Any]:
            valid = real(record, **options)
            return {**valid, "price": Decimal("1e30")} if valid["trade_id"] == "V-3" else valid

        writer._decoder._validators["trade"] = fake
        writer.start()
        try:
            wait_until(lambda: len(bench.written()) == 5 and writer.health().dead_lettered == 1, 45, "5 rows")
        finally:
            writer.stop()
        assert sorted(bench.written()) == sorted(set(bench.valid) - {"V-3"})
        letter = DeadLetter.from_json(read_topic(bench.config, bench.config.topics.deadletter, 1)[0].value())
        assert (letter.reason_code, letter.record_id, letter.source_offset) == ("unconvertible", "V-3", 3)
    finally:
        bench.close()
