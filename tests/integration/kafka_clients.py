"""Kafka clients the integration tests share: an acks=all producer that records every delivery report,
a fresh topic, and a reader that returns everything on a topic (duplicates included)."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


class AckCounter:
    """An idempotent acks=all producer that records every delivery report."""

    def __init__(self, bootstrap: str, topic: str, **conf: object) -> None:
        self.topic = topic
        self.acked: list[bytes] = []
        self.failed: list[str] = []
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5,
             "message.timeout.ms": 120000, **conf}
        )  # fmt: skip

    def _report(self, err: object, msg: object) -> None:
        if err is None:
            self.acked.append(msg.value())  # type: ignore[attr-defined]
        else:
            self.failed.append(str(err))

    def send(self, values: list[bytes]) -> None:
        for value in values:
            self.producer.produce(self.topic, value=value, on_delivery=self._report)
        self.producer.poll(0)

    def flush(self, timeout: float = 60) -> int:
        return int(self.producer.flush(timeout))


def new_topic(bootstrap: str, partitions: int = 1) -> str:
    topic = f"chaos-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(30)
    return topic


def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list[bytes]:
    """Every value on the topic, read by a fresh group until `expected` arrived or the deadline passed."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < expected and time.monotonic() < deadline:
            values += [m.value() for m in consumer.consume(1000, 0.5) if m.error() is None]
        # Anything more (a duplicate) arrives right behind: read a little longer.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            values += [m.value() for m in consumer.consume(1000, 0.2) if m.error() is None]
    finally:
        consumer.close()
    return values
