"""Read what reached the sinks, independently of the pipeline's own consumer and writer."""

from __future__ import annotations

import logging
import time
from typing import Any

from k2.chaos.anomaly import Anomaly, AnomalyKind, register
from k2.chaos.checker import Observed, Unreadable
from k2.platform.config import PlatformConfig
from k2.platform.redrive import REDRIVEN_HEADER

log = logging.getLogger(__name__)

BROKEN_BOOKKEEPING = register(
    AnomalyKind(
        "broken_offset_bookkeeping",
        "exactly-once bookkeeping broken",
        "a table's recorded Kafka offsets went backwards, or rows sit above them or twice at one position: a "
        "writer replaying from the recorded offsets would write rows again",
    )
)


class KafkaTopicReader:
    """Reads a topic from the beginning by assignment (no group, no rebalance wait), incrementally:
    each read() returns everything seen so far.

    Each read() goes to the end of every partition as the broker reports it in its fetch answers (librdkafka's
    partition-EOF event; Tansu's ListOffsets answer is wrong, its fetch high watermark is right), so it costs a
    fetch round trip, not a fixed wait. Every partition is first sought to where the reader stands, so the next
    fetch answers afresh. Where no end is reported (the broker down or frozen), it returns once nothing has
    come for `max_wait` s.

    A message it cannot decode is never skipped silently: it goes to `unreadable` with its topic, partition,
    offset and the error (the checker counts an acknowledged record among them as lost). A schema registry
    that does not answer is not the record's fault: the reader seeks back and decodes it on a later read().
    """

    def __init__(self, config: PlatformConfig, topic: str, source: str | None = None) -> None:
        from confluent_kafka import Consumer
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroDeserializer

        self.topic = topic
        self.source = source or f"kafka:{topic}"
        self._consumer = Consumer(
            {**config.kafka_base(), "group.id": "k2-checker", "client.id": "checker", "enable.auto.commit": False,
             "enable.partition.eof": True, "fetch.wait.max.ms": 100}  # an end is reported within ~0.1 s
        )  # fmt: skip
        self._partitions: set[int] = set()
        self._next: dict[int, int] = {}  # per partition, the offset to read next (known once a record or end came)
        self._assign_new_partitions()
        self._deserialize = AvroDeserializer(SchemaRegistryClient(config.registry_conf()))
        self.seen: list[Observed] = []
        self.unreadable: list[Unreadable] = []
        self.redriven = 0  # copies the redrive put back (k2.platform.redrive): the originals are read

    def _assign_new_partitions(self, timeout: float = 30.0) -> None:
        """Read every partition from its beginning, including partitions added since the last read."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        found = set(self._consumer.list_topics(self.topic, timeout=timeout).topics[self.topic].partitions)
        new = sorted(found - self._partitions)
        if new:
            self._consumer.incremental_assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in new])
            self._partitions.update(new)

    def read(self, max_wait: float = 1.0) -> list[Observed]:
        from confluent_kafka import KafkaError, KafkaException, TopicPartition
        from confluent_kafka.serialization import MessageField, SerializationContext

        try:
            self._assign_new_partitions(timeout=5.0)
        except KafkaException as exc:  # the broker is down: read what the assigned partitions give
            log.info("kafka reader: partitions of %s not refreshed: %s", self.topic, exc)
        for partition, offset in self._next.items():  # a partition already at its end reports it only after a seek
            try:
                self._consumer.seek(TopicPartition(self.topic, partition, offset))
            except KafkaException as exc:  # not fetching yet: its end is waited for as any other
                log.info("kafka reader: %s [%d] not sought to %d: %s", self.topic, partition, offset, exc)
        ctx = SerializationContext(self.topic, MessageField.VALUE)
        at_end: set[int] = set()
        quiet_since = time.monotonic()
        while not self._partitions <= at_end:
            batch = self._consumer.consume(5000, 0.1)
            if batch:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= max_wait:
                break  # no end reported (the broker does not answer): what came so far
            rewound: set[int] = set()
            for msg in batch:
                partition, error = msg.partition(), msg.error()
                if partition in rewound:
                    continue  # fetched again after the seek
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(partition)
                        self._next[partition] = msg.offset()
                    else:
                        log.info("checker reader %s: %s", self.topic, error)
                    continue
                at_end.discard(partition)
                self._next[partition] = msg.offset() + 1
                if any(name == REDRIVEN_HEADER for name, _ in msg.headers() or ()):
                    self.redriven += 1  # a copy of a dead-lettered record already on the topic: read the original
                    continue
                try:
                    record = self._deserialize(msg.value(), ctx)
                    key = _key_of(record)
                except Exception as exc:
                    if _registry_unavailable(exc):
                        log.info("checker reader %s: registry unavailable (%s); reading again later", self.topic, exc)
                        self._consumer.seek(TopicPartition(self.topic, partition, msg.offset()))
                        self._next[partition] = msg.offset()
                        rewound.add(partition)
                        continue
                    self._unreadable(msg, exc)
                    continue
                self.seen.append(
                    Observed(key, record.get("symbol"), record.get("sequence_number"), self.source,
                             (partition, msg.offset()))
                )  # fmt: skip
            if rewound:
                break
        return list(self.seen)

    def _unreadable(self, msg: Any, exc: BaseException) -> None:
        value = msg.value()
        error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        found = Unreadable(self.source, self.topic, msg.partition(), msg.offset(), error, len(value or b""))
        self.unreadable.append(found)
        log.warning("checker reader: %s cannot be read back: %s", found.where, error)

    def close(self) -> None:
        self._consumer.close()


def _key_of(record: Any) -> str:
    """The record's unique id; a value that decodes to no record with an id cannot be checked."""
    if not isinstance(record, dict):
        raise ValueError(f"decodes to {type(record).__name__}, not a record (an empty value or a tombstone?)")
    key = record.get("trade_id") or record.get("quote_id")
    if not isinstance(key, str) or not key:
        raise ValueError(f"has no trade_id or quote_id ({sorted(record)[:6]})")
    return key


def _registry_unavailable(exc: BaseException) -> bool:
    """The schema registry did not answer (down, 5xx, timeout): the message itself may be fine."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    if isinstance(exc, SchemaRegistryError):
        return exc.http_status_code >= 500 or exc.http_status_code < 0
    # the registry client's HTTP library (httpx; confluent-kafka vendors it as `httpx2`) could not talk to it
    transport = ("httpx", "httpcore", "requests", "urllib3")
    if any(cls.__module__.startswith(transport) for cls in type(exc).__mro__):
        return True
    return isinstance(exc, ConnectionError | TimeoutError)


class IcebergReader:
    """Scans every trade table of the scenario's namespace straight from the catalog (not via the writer)."""

    source = "iceberg:trades"

    def __init__(self, config: PlatformConfig) -> None:
        self.config = config

    def read(self) -> list[Observed]:
        observed = []
        for table in self._tables():
            rows = table.scan(selected_fields=("trade_id", "symbol", "sequence_number")).to_arrow().to_pylist()
            observed += [Observed(r["trade_id"], r["symbol"], r["sequence_number"], self.source) for r in rows]
        return observed

    def claimed(self, topic: str) -> dict[int, int]:
        """Per partition of `topic`, the offset below which the writer says every record is handled: the highest
        `k2.offsets` any table's newest snapshot recorded (the writer commits Kafka offsets only after these)."""
        from k2.platform.iceberg_tables import stored_offsets

        claimed: dict[int, int] = {}
        for table in self._tables():
            for partition, next_offset in stored_offsets(table).get(topic, {}).items():
                claimed[int(partition)] = max(claimed.get(int(partition), 0), int(next_offset))
        return claimed

    def audit(self) -> list[Anomaly]:
        """The writer's bookkeeping over each table's whole snapshot history (k2.platform.table_audit)."""
        from k2.platform.table_audit import audit_table

        found = []
        for table in self._tables():
            for problem in audit_table(table):
                evidence = {"problem": problem.kind, "detail": problem.detail, "snapshot_id": problem.snapshot_id}
                subject = f"{problem.table} partition {problem.partition}"
                found.append(Anomaly(BROKEN_BOOKKEEPING.name, "iceberg-writer", subject, evidence))
        return found

    def _tables(self) -> list[Any]:
        from k2.platform.iceberg_tables import build_catalog

        try:
            catalog = build_catalog(self.config)
            idents = [i for i in catalog.list_tables(self.config.namespace) if i[-1].startswith("trades_")]
            return [catalog.load_table(ident) for ident in idents]
        except Exception as exc:  # no namespace yet, or the catalog is down: nothing observed this time
            log.info("iceberg reader: %s", exc)
            return []


def read_dead_letters(config: PlatformConfig, expected: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The dead-letter topic's records (JSON), read until `expected` arrived or the deadline passed."""
    import json

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({**config.kafka_base(), "group.id": "k2-checker-dlq", "enable.auto.commit": False})
    topic = config.topics.deadletter
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        letters: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(letters) < expected and time.monotonic() < deadline:
            letters += [json.loads(m.value()) for m in consumer.consume(100, 0.5) if m.error() is None]
        return letters
    finally:
        consumer.close()
