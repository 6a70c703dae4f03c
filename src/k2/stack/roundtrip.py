"""One real round trip through each service: what `k2 smoke` and the stack tests rely on."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from k2.stack.endpoints import Endpoints
from k2.stack.services.seaweed import s3_client


@dataclass(frozen=True)
class RoundTrip:
    service: str
    what: str
    seconds: float


def kafka_round_trip(ep: Endpoints, messages: int = 1000, timeout: float = 30.0) -> RoundTrip:
    """Produce with an idempotent acks=all producer, read back with a group, commit, verify the commit."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # not in the stubs' exports

    started = time.monotonic()
    topic = f"k2-roundtrip-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": ep.kafka_bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        future.result(timeout)
    producer = Producer(
        {"bootstrap.servers": ep.kafka_bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
    )
    acked: list[int] = []

    def on_delivery(err: object, msg: object) -> None:
        if err is None:
            acked.append(1)

    for i in range(messages):
        producer.produce(topic, key=str(i).encode(), value=f"message-{i}".encode(), on_delivery=on_delivery)
    left = producer.flush(timeout)
    if left or len(acked) != messages:
        raise RuntimeError(f"kafka: {len(acked)}/{messages} acknowledged, {left} still queued after {timeout}s")

    consumer = Consumer(
        {
            "bootstrap.servers": ep.kafka_bootstrap,
            "group.id": f"{topic}-group",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    try:
        consumer.subscribe([topic])
        seen: set[bytes] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < messages and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                value = msg.value()
                if msg.error() is None and value is not None:
                    seen.add(value)
        if len(seen) != messages:
            raise RuntimeError(f"kafka: read back {len(seen)}/{messages} messages within {timeout}s")
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, 0)], timeout=timeout)[0].offset
        if committed != messages:
            raise RuntimeError(f"kafka: committed offset {committed}, expected {messages}")
    finally:
        consumer.close()
    return RoundTrip("kafka", f"{messages} messages produced (idempotent, acks=all), consumed, committed",
                     time.monotonic() - started)  # fmt: skip


def s3_round_trip(ep: Endpoints) -> RoundTrip:
    started = time.monotonic()
    client = s3_client(ep.s3_endpoint, ep.s3_access_key, ep.s3_secret_key)
    key = f"roundtrip/{uuid.uuid4().hex}.bin"
    body = uuid.uuid4().bytes * 1024
    client.put_object(Bucket=ep.s3_bucket, Key=key, Body=body)
    if client.get_object(Bucket=ep.s3_bucket, Key=key)["Body"].read() != body:
        raise RuntimeError(f"s3: object {key} read back different")
    listed = [o["Key"] for o in client.list_objects_v2(Bucket=ep.s3_bucket, Prefix="roundtrip/").get("Contents", [])]
    if key not in listed:
        raise RuntimeError(f"s3: object {key} not listed")
    client.delete_object(Bucket=ep.s3_bucket, Key=key)
    return RoundTrip("s3", f"{len(body)} bytes put, read back, listed, deleted", time.monotonic() - started)


def postgres_round_trip(ep: Endpoints) -> RoundTrip:
    import psycopg

    started = time.monotonic()
    table = f"roundtrip_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ep.postgres_uri, connect_timeout=5, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)", [(i, f"v{i}") for i in range(100)])
        count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        conn.execute(f"DROP TABLE {table}")
    if not count or count[0] != 100:
        raise RuntimeError(f"postgres: expected 100 rows, found {count}")
    return RoundTrip("postgres", "table created, 100 rows inserted and counted", time.monotonic() - started)


def registry_round_trip(ep: Endpoints) -> RoundTrip:
    """Register a schema over the Confluent REST API and read it back by id."""
    import json
    import urllib.request

    started = time.monotonic()
    subject = f"roundtrip-{uuid.uuid4().hex[:8]}-value"
    schema = json.dumps({"type": "record", "name": "RoundTrip", "fields": [{"name": "id", "type": "long"}]})
    request = urllib.request.Request(
        f"{ep.schema_registry_url}/subjects/{subject}/versions",
        data=json.dumps({"schema": schema}).encode(),
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        schema_id = json.loads(response.read())["id"]
    with urllib.request.urlopen(f"{ep.schema_registry_url}/schemas/ids/{schema_id}", timeout=10) as response:
        fetched = json.loads(json.loads(response.read())["schema"])
    if fetched["name"] != "RoundTrip":
        raise RuntimeError(f"schema-registry: schema {schema_id} read back as {fetched}")
    return RoundTrip("schema-registry", f"schema registered (id {schema_id}) and read back", time.monotonic() - started)


def all_round_trips(ep: Endpoints) -> list[RoundTrip]:
    return [kafka_round_trip(ep), s3_round_trip(ep), postgres_round_trip(ep), registry_round_trip(ep)]
