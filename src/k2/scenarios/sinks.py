"""Read what reached the sinks, independently of the pipeline's own consumer and writer."""

from __future__ import annotations

import logging
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
            {**config.kafka_base(), "group.id": "k2-checker", "client.id": "checker", "enable.auto.commit": False}
        )
        self._partitions: set[int] = set()
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
        from confluent_kafka import KafkaException, TopicPartition
        from confluent_kafka.serialization import MessageField, SerializationContext

        try:
            self._assign_new_partitions(timeout=5.0)
        except KafkaException as exc:  # the broker is down: read what the assigned partitions give
            log.info("kafka reader: partitions of %s not refreshed: %s", self.topic, exc)
        ctx = SerializationContext(self.topic, MessageField.VALUE)
        while True:
            batch = self._consumer.consume(5000, max_wait)
            rewound: set[int] = set()
            for msg in batch:
                if msg.error() is not None:
                    log.info("checker reader %s: %s", self.topic, msg.error())
                    continue
                if msg.partition() in rewound:
                    continue  # fetched again after the seek
                if any(name == REDRIVEN_HEADER for name, _ in msg.headers() or ()):
                    self.redriven += 1  # a copy of a dead-lettered record already on the topic: read the original
                    continue
                try:
                    record = self._deserialize(msg.value(), ctx)
                    key = _key_of(record)
                except Exception as exc:
                    if _registry_unavailable(exc):
                        log.info("checker reader %s: registry unavailable (%s); reading again later", self.topic, exc)
                        self._consumer.seek(TopicPartition(self.topic, msg.partition(), msg.offset()))
                        rewound.add(msg.partition())
                        continue
                    self._unreadable(msg, exc)
                    continue
                self.seen.append(
                    Observed(key, record.get("symbol"), record.get("sequence_number"), self.source,
                             (msg.partition(), msg.offset()))
                )  # fmt: skip
            if not batch or rewound:
                return list(self.seen)
            max_wait = 0.2

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
    import time

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
