"""What the stack tests share: running the real CLI, proving nothing is left running, and data that must
survive a restart (seeded in every service, then checked)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from k2.stack import Endpoints, procs
from k2.stack.services.seaweed import s3_client


def run_k2(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k2", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        check=False,
    )


def processes_under(data_dir: Path) -> list[tuple[int, str]]:
    """Every live process whose working directory or command line points into data_dir."""
    found = []
    marker = str(data_dir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if procs.starttime_of(int(entry.name)) is None:
            continue
        if cwd.startswith(marker) or marker in cmdline:
            found.append((int(entry.name), cmdline.strip()))
    return found


def produce(ep: Endpoints, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": ep.kafka_bootstrap, "enable.idempotence": True, "acks": "all"})
    acked: list[bytes] = []
    for i in range(count):
        producer.produce(topic, value=f"{topic}-{i}".encode(), on_delivery=lambda e, m: e or acked.append(m.value()))
    assert producer.flush(30) == 0
    assert len(acked) == count


def consume_and_commit(ep: Endpoints, topic: str, group: str, count: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": ep.kafka_bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "session.timeout.ms": 6000})  # fmt: skip
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(values) < count and time.monotonic() < deadline:
            values += [m.value() for m in consumer.consume(500, 0.5) if m.error() is None]
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return values


def committed_offset(ep: Endpoints, topic: str, group: str) -> int:
    consumer = Consumer({"bootstrap.servers": ep.kafka_bootstrap, "group.id": group})
    try:
        return consumer.committed([TopicPartition(topic, 0)], timeout=30)[0].offset
    finally:
        consumer.close()


def seed_data(ep: Endpoints) -> dict[str, str]:
    """One topic with a committed group offset, one S3 object, one table: what must survive."""
    topic, group = f"survive-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": ep.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    produce(ep, topic, 50)
    assert len(consume_and_commit(ep, topic, group, 50)) == 50
    s3_client(ep.s3_endpoint, ep.s3_access_key, ep.s3_secret_key).put_object(
        Bucket=ep.s3_bucket, Key=f"{topic}.txt", Body=b"kept"
    )
    with psycopg.connect(ep.postgres_uri, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{topic}" (id int)')
        conn.execute(f'INSERT INTO "{topic}" SELECT generate_series(1, 25)')
    return {"topic": topic, "group": group}


def assert_data_survived(ep: Endpoints, seeded: dict[str, str]) -> None:
    topic, group = seeded["topic"], seeded["group"]
    assert topic in AdminClient({"bootstrap.servers": ep.kafka_bootstrap}).list_topics(timeout=30).topics
    assert committed_offset(ep, topic, group) == 50
    assert len(consume_and_commit(ep, topic, f"fresh-{uuid.uuid4().hex[:6]}", 50)) == 50
    body = (
        s3_client(ep.s3_endpoint, ep.s3_access_key, ep.s3_secret_key)
        .get_object(Bucket=ep.s3_bucket, Key=f"{topic}.txt")["Body"]
        .read()
    )
    assert body == b"kept"
    with psycopg.connect(ep.postgres_uri) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{topic}"').fetchone() == (25,)
