"""`k2 stack up --brokers 3` for real: three Tansu brokers over one store, each behind its own fault-proxy
port; topics growing through the store; and Tansu's group coordinator handing an unchanged membership its old
assignment after a topic grows (measured here, and what the writer's re-join works around)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from k2.platform.config import PlatformConfig, Topics, ensure_topics
from k2.platform.consumer import MarketDataConsumer
from k2.stack import LocalStack
from k2.stack.services.kafka import admin_client
from tests.integration.stack.helpers import run_k2

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    root = Path(tempfile.mkdtemp(prefix="k2-brokers-"))
    os.chmod(root, 0o755)
    try:
        with LocalStack(root / "stack", brokers=3) as running:
            yield running
    finally:
        shutil.rmtree(root, ignore_errors=True)


def new_topic(bootstrap: str, partitions: int = 3) -> str:
    topic = f"mb-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    return topic


def test_three_brokers_over_one_store_each_behind_its_own_proxy(stack: LocalStack) -> None:
    status = {s.name: s for s in stack.status()}
    state = stack.state()
    proxied = json.loads((stack.data_dir / "fault-proxy" / "proxies.json").read_text())["proxies"]
    for name in ("kafka", "kafka-2", "kafka-3"):
        assert status[name].healthy, status[name]
        svc = state.services[name]
        assert svc.advertised.port != svc.listen.port
        assert {"name": name, "listen": str(svc.advertised), "upstream": str(svc.listen)}.items() <= next(
            p for p in proxied if p["name"] == name
        ).items()
    brokers = stack.endpoints().kafka_brokers
    assert stack.endpoints().kafka_bootstrap == ",".join(brokers) and len(set(brokers)) == 3
    topic = new_topic(brokers[0])
    deadline = time.monotonic() + 20  # each broker re-reads the store's metadata within a few seconds

    def listed() -> bool:
        return all(topic in admin_client(b, 10).list_topics(timeout=10).topics for b in brokers)

    while not listed() and time.monotonic() < deadline:
        time.sleep(0.25)
    assert listed()  # created through one broker, served by all: one shared store
    refused = run_k2("stack", "up", "--data-dir", str(stack.data_dir), "--brokers", "1")
    assert refused.returncode == 2 and "runs 3 broker(s), not 1" in " ".join(refused.stderr.split())


def test_partitions_are_added_through_the_store_and_used(stack: LocalStack) -> None:
    brokers = stack.endpoints().kafka_brokers
    topic = new_topic(brokers[0])
    added = stack.add_partitions(topic, 5)
    assert (added.before, added.after, added.via) == (3, 5, "tansu-store")
    assert all(len(admin_client(b, 10).list_topics(timeout=10).topics[topic].partitions) == 5 for b in brokers)
    producer = Producer({"bootstrap.servers": brokers[2]})
    producer.produce(topic, b"on a new partition", partition=4)
    assert producer.flush(30) == 0
    reader = Consumer({"bootstrap.servers": brokers[1], "group.id": f"r-{topic}"})
    reader.assign([TopicPartition(topic, 4, 0)])
    got = [m.value() for m in reader.consume(10, 10) if m.error() is None]
    reader.close()
    assert got == [b"on a new partition"]


def test_tansu_gives_an_unchanged_group_its_old_assignment_after_a_topic_grows(stack: LocalStack) -> None:
    """A fact about Tansu 0.6 that the writer works around (if this starts failing, Tansu fixed it)."""
    bootstrap = stack.endpoints().first_broker
    topic = new_topic(bootstrap)
    seen: list[list[int]] = []
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "session.timeout.ms": 3000,
                         "heartbeat.interval.ms": 500, "topic.metadata.refresh.interval.ms": 1000})  # fmt: skip
    consumer.subscribe([topic], on_assign=lambda _c, parts: seen.append(sorted(p.partition for p in parts)))
    try:
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:
            consumer.poll(0.1)
        stack.add_partitions(topic, 6)
        deadline = time.monotonic() + 30
        while len(seen) < 2 and time.monotonic() < deadline:  # librdkafka re-joins on the new partition count
            consumer.poll(0.1)
    finally:
        consumer.close()
    assert seen[:2] == [[0, 1, 2], [0, 1, 2]]  # re-joined after the growth, but handed the old assignment


def test_the_writers_consumer_re_joins_and_gets_the_new_partitions(stack: LocalStack) -> None:
    tag = uuid.uuid4().hex[:8]
    config = PlatformConfig.from_endpoints(stack.endpoints(), kafka_bootstrap=stack.endpoints().first_broker,
                                           topics=Topics.with_prefix(f"mb{tag}"), namespace=f"mb{tag}")  # fmt: skip
    ensure_topics(config)
    quick = {"session.timeout.ms": 3000, "heartbeat.interval.ms": 500, "topic.metadata.refresh.interval.ms": 1000}
    consumer = MarketDataConsumer(config, f"w-{tag}", overrides=quick)
    consumer.start()

    def trades_assigned() -> set[int]:
        return {tp.partition for tp in consumer.assigned if tp.topic == config.topics.trades}

    def spin_until(condition: object, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            consumer.check_growth()  # what the writer's loop does
            if consumer.needs_rejoin:
                consumer.rejoin()
            consumer.consume(100, 0.1)
            if condition():  # type: ignore[operator]
                return True
        return False

    try:
        assert spin_until(lambda: trades_assigned() == {0, 1, 2}, 30)
        stack.add_partitions(config.topics.trades, 5)
        assert spin_until(lambda: trades_assigned() == {0, 1, 2, 3, 4}, 40), trades_assigned()
    finally:
        consumer.close()
