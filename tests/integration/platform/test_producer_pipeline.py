"""The market-data producer on the embedded stack: outcomes with offsets, order, dead letters, outages."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from tests.integration.platform.pipeline_helpers import (
    SYMBOLS,
    fresh_config,
    make_quote,
    make_trade,
    read_topic,
    running_stack,
    wait_until,
)

from k2.platform.deadletter import DeadLetter
from k2.platform.errors import PlatformError, RecordRejected, ValidationError
from k2.platform.producer import DeliveryEvent, MarketDataProducer, Status
from k2.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack() as running:
        yield running


def test_observer_sees_every_acknowledgement_with_its_offset_and_symbol_order_holds(stack: LocalStack) -> None:
    config = fresh_config(stack)
    events: list[DeliveryEvent] = []
    trades = [make_trade(i, symbol) for i in range(250) for symbol in SYMBOLS]
    with MarketDataProducer(config, observer=events.append) as producer:
        for trade in trades:
            assert producer.produce_trade(trade) == trade["trade_id"]
        producer.produce_quote(make_quote(1))
        assert producer.flush(30) == 0

    trade_events = {e.record_id: e for e in events if e.kind == "trade"}
    assert len(events) == len(trades) + 1 and len(trade_events) == len(trades)
    assert all(e.status is Status.ACKNOWLEDGED and e.error is None for e in events)
    assert all(e.completed_at >= e.enqueued_at > 0 for e in events)

    deserialize = AvroDeserializer(SchemaRegistryClient(config.registry_conf()))
    messages = read_topic(config, config.topics.trades, len(trades))
    assert len(messages) == len(trades)
    by_symbol: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for message in messages:
        record: dict[str, Any] = deserialize(message.value(), SerializationContext(message.topic(), MessageField.VALUE))
        event = trade_events[record["trade_id"]]
        assert (event.partition, event.offset) == (message.partition(), message.offset())
        assert (event.symbol, event.sequence_number) == (record["symbol"], record["sequence_number"])
        assert message.key() == record["symbol"].encode()
        by_symbol[record["symbol"]].append((message.partition(), message.offset(), record["sequence_number"]))
    for symbol, rows in by_symbol.items():
        assert len({partition for partition, _, _ in rows}) == 1, f"{symbol} spread over partitions"
        sequences = [sequence for _, _, sequence in sorted(rows)]
        assert sequences == sorted(sequences) == list(range(250)), f"{symbol} out of order"


CASES = {
    "too_many_fraction_digits": ("price", {"price": Decimal("101.123456789")}),
    "missing_field": ("quantity", {"quantity": None}),
    "asset_class_mismatch": ("asset_class", {"asset_class": "equities"}),
    "wrong_type": ("sequence_number", {"sequence_number": "seven"}),
    "float_not_allowed": ("price", {"price": 101.5}),
}


def test_invalid_records_go_to_the_dead_letter_topic_and_valid_ones_still_flow(stack: LocalStack) -> None:
    config = fresh_config(stack)
    events: list[DeliveryEvent] = []
    with MarketDataProducer(config, observer=events.append) as producer:
        for i, (code, (field, change)) in enumerate(CASES.items()):
            trade = {k: v for k, v in {**make_trade(i), **change}.items() if v is not None}
            with pytest.raises(RecordRejected) as caught:
                producer.produce_trade(trade)
            error = caught.value
            assert isinstance(error, ValidationError) and isinstance(error, PlatformError)
            assert (error.reason_code, error.field, error.dead_letter_topic) == (code, field, config.topics.deadletter)
            producer.produce_trade(make_trade(100 + i))  # the pipeline keeps running
        assert producer.flush(30) == 0

    rejected = [e for e in events if e.status is Status.REJECTED]
    assert [e.reason_code for e in rejected] == list(CASES)
    assert sum(e.status is Status.ACKNOWLEDGED for e in events) == len(CASES)
    letters = [DeadLetter.from_json(m.value()) for m in read_topic(config, config.topics.deadletter, len(CASES))]
    assert [letter.reason_code for letter in letters] == list(CASES)
    for i, letter in enumerate(letters):
        assert letter.stage == "producer" and letter.kind == "trade" and letter.reason
        assert letter.record_id == f"T-BTC-USD-{i}" == letter.payload["trade_id"]
        assert letter.field == CASES[letter.reason_code][0]
    assert letters[0].payload["price"] == "101.123456789"  # the original payload, exactly


def test_kafka_outage_buffers_then_delivers_everything(stack: LocalStack) -> None:
    config = fresh_config(stack)
    events: list[DeliveryEvent] = []
    with MarketDataProducer(config, observer=events.append) as producer:
        producer.produce_trade(make_trade(0))
        assert producer.flush(30) == 0
        stack.stop_service("kafka")
        try:
            for i in range(1, 201):
                producer.produce_trade(make_trade(i))
            assert producer.flush(1.0) > 0  # nothing can be acknowledged while the broker is down
            assert sum(e.status is Status.ACKNOWLEDGED for e in events) == 1
        finally:
            stack.start_service("kafka")
        wait_until(lambda: producer.flush(1.0) == 0, 60, "the buffered trades to be acknowledged")
    assert [e.status for e in events] == [Status.ACKNOWLEDGED] * 201
    assert len({(e.partition, e.offset) for e in events}) == 201
    assert len(read_topic(config, config.topics.trades, 201)) == 201
