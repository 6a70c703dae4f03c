"""A consumer that paused its partitions (the writer backing off during an outage) and went through a rebalance
must fetch again when it resumes.

Found by `k2 chaos explore --seed 5 --duration 40s --intensity high`: an S3 outage made the writers back off
with their partitions paused; the group rebalanced meanwhile, and librdkafka hands a partition back to the same
member still paused (its pause state survives a rebalance: confluentinc/librdkafka#1849) while the consumer had
reset its own flag to "resumed". Its resume was then a no-op: the writers never fetched again and everything
acknowledged after the outage stayed out of Iceberg (a HANG at the drain).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer

from k2.platform.config import PlatformConfig
from k2.platform.consumer import MarketDataConsumer
from k2.platform.producer import MarketDataProducer
from k2.stack import LocalStack

from .pipeline_helpers import fresh_config, make_trade, running_stack, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack() as running:
        yield running


def produce_all(config: PlatformConfig, trades: list[dict[str, object]]) -> None:
    with MarketDataProducer(config) as producer:
        for trade in trades:
            producer.produce_trade(trade)
        assert producer.flush(30) == 0


def test_partitions_paused_before_a_rebalance_fetch_again_after_it(stack: LocalStack) -> None:
    config = fresh_config(stack)
    group = "pause-rebalance"
    produce_all(config, [make_trade(i) for i in range(10)])
    consumer = MarketDataConsumer(config, group)
    consumer.start()
    seen: list[object] = []
    try:
        wait_until(lambda: seen.extend(consumer.consume(100, 0.2)) or len(seen) >= 10, 60, "the first 10 trades")
        everything = {(tp.topic, tp.partition) for tp in consumer.assigned}
        consumer.pause(True)  # the writer backing off: it keeps its membership, fetches nothing
        other = Consumer({**config.kafka_base(), "group.id": group, "session.timeout.ms": 6000,
                          "enable.auto.commit": False, "client.id": "consumer"})  # fmt: skip
        other.subscribe([config.topics.trades, config.topics.quotes])
        try:

            def split() -> bool:
                other.poll(0.1)
                consumer.consume(1, 0.1)
                return bool(other.assignment()) and len(consumer.assigned) < len(everything)

            wait_until(split, 60, "a rebalance giving the second member some partitions")
        finally:
            other.close()  # it leaves: every partition goes back to the first member
        wait_until(lambda: (consumer.consume(1, 0.1), {(tp.topic, tp.partition) for tp in consumer.assigned})[1]
                   == everything, 60, "the partitions back with the first member")  # fmt: skip
        produce_all(config, [make_trade(i) for i in range(10, 20)])
        consumer.pause(False)  # the outage is over
        fresh: list[object] = []
        wait_until(lambda: fresh.extend(consumer.consume(100, 0.2)) or len(fresh) >= 10, 30,
                   "the trades sent after the rebalance (a partition left paused fetches nothing)")  # fmt: skip
    finally:
        consumer.close()
