"""The checker's independent Kafka reader on a real broker: what it cannot decode is reported with its position
(an acknowledged record among it is lost), a registry outage is waited out rather than counted, and
acknowledgements that named the wrong offset come out as anomalies (issue #10, part 2)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from confluent_kafka import Producer
from tests.integration.platform.pipeline_helpers import fresh_config, make_trade

from k2.chaos.anomaly import WRONG_ACK_OFFSET
from k2.chaos.checker import check, wait_drained
from k2.chaos.ledger import Ledger
from k2.platform.config import PlatformConfig
from k2.platform.producer import DeliveryEvent, MarketDataProducer, Status
from k2.scenarios.sinks import KafkaTopicReader
from k2.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def produce(config: PlatformConfig, observer: Any, count: int, first: int = 0) -> None:
    with MarketDataProducer(config, observer=observer) as producer:
        for i in range(first, first + count):
            producer.produce_trade(make_trade(i, "BTC-USD"))
        assert producer.flush(30) == 0


def raw_send(config: PlatformConfig, value: bytes | None) -> tuple[int, int]:
    """Bytes on the trades topic that did not come through K2's serializer; returns where they landed."""
    landed: list[tuple[int, int]] = []
    producer = Producer(config.kafka_base())
    producer.produce(config.topics.trades, value, b"BTC-USD",
                     on_delivery=lambda err, msg: landed.append((msg.partition(), msg.offset())))  # fmt: skip
    assert producer.flush(10) == 0 and len(landed) == 1
    return landed[0]


def test_unreadable_records_are_reported_and_an_acknowledged_one_is_lost(stack: LocalStack) -> None:
    config = fresh_config(stack)
    ledger = Ledger("readers")
    produce(config, ledger.observe, 5)
    garbage_at = raw_send(config, b"\x00\x00\x00\x00\x01not avro at all")
    tombstone_at = raw_send(config, None)
    # a record the broker acknowledged at `garbage_at` that reads back as garbage
    ledger.invoke("T-garbled", group="BTC-USD", seq=99)
    ledger.ack("T-garbled", partition=garbage_at[0], offset=garbage_at[1])

    reader = KafkaTopicReader(config, config.topics.trades)
    try:
        observed = wait_drained(reader.read, ledger, timeout=3, sources=[reader.source])
    finally:
        reader.close()
    assert sorted((u.partition, u.offset) for u in reader.unreadable) == sorted([garbage_at, tombstone_at])
    assert all(u.topic == config.topics.trades and u.error for u in reader.unreadable)
    result = check(ledger, observed, name="readers", sources=[reader.source], ack_positions=[reader.source],
                   unreadable=reader.unreadable)  # fmt: skip
    assert [x.key for x in result.lost] == ["T-garbled"]
    assert (result.lost[0].cause or "").startswith("unreadable at its acknowledged position: EOFError")
    assert result.data_loss and len(result.unreadable) == 2 and result.accounting() == []


def test_a_registry_outage_is_waited_out_not_counted_as_unreadable(stack: LocalStack) -> None:
    config = fresh_config(stack)
    ledger = Ledger("registry")
    produce(config, ledger.observe, 20)
    stack.stop_service("schema-registry")
    try:
        reader = KafkaTopicReader(config, config.topics.trades)
        assert reader.read(max_wait=2.0) == [] and reader.unreadable == []
    finally:
        stack.start_service("schema-registry")
    try:
        observed = wait_drained(reader.read, ledger, timeout=30, sources=[reader.source])
    finally:
        reader.close()
    assert reader.unreadable == []
    assert not check(ledger, observed, name="registry", sources=[reader.source]).data_loss


def test_acknowledgements_with_wrong_offsets_are_anomalies_not_loss(stack: LocalStack) -> None:
    """A FAKE broker misbehaviour: Tansu acknowledged records at offsets 0-4 (or none) after a broker kill, which
    cannot be provoked on demand, so an observer rewrites the offsets real acknowledgements carry."""
    config = fresh_config(stack)
    ledger = Ledger("offsets")
    produce(config, ledger.observe, 10)  # the real offsets of partition P: 0-9

    def lying(event: DeliveryEvent) -> None:
        if event.status is Status.ACKNOWLEDGED:
            event = replace(event, offset=(event.offset or 0) % 5 if event.offset % 2 else -1)
        ledger.observe(event)

    produce(config, lying, 10, first=10)  # really at 10-19, acknowledged at 0-4 or -1
    reader = KafkaTopicReader(config, config.topics.trades)
    try:
        observed = wait_drained(reader.read, ledger, timeout=30, sources=[reader.source])
    finally:
        reader.close()
    result = check(ledger, observed, name="offsets", sources=[reader.source], ack_positions=[reader.source])
    assert not result.data_loss and result.clean
    assert len(result.anomalies) == 10 and {a.kind for a in result.anomalies} == {WRONG_ACK_OFFSET.name}
    assert sorted(a.evidence["found_at"][0][1] for a in result.anomalies) == list(range(10, 20))
