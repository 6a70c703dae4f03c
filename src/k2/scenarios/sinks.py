"""Read what reached the sinks, independently of the pipeline's own consumer and writer."""

from __future__ import annotations

import logging
from typing import Any

from k2.chaos.checker import Observed
from k2.platform.config import PlatformConfig

log = logging.getLogger(__name__)


class KafkaTopicReader:
    """Reads a topic from the beginning by assignment (no group, no rebalance wait), incrementally:
    each read() returns everything seen so far."""

    def __init__(self, config: PlatformConfig, topic: str, source: str | None = None) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroDeserializer

        self.topic = topic
        self.source = source or f"kafka:{topic}"
        self._consumer = Consumer(
            {**config.kafka_base(), "group.id": "k2-checker", "client.id": "checker", "enable.auto.commit": False}
        )
        metadata = self._consumer.list_topics(topic, timeout=30)
        partitions = sorted(metadata.topics[topic].partitions)
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self._deserialize = AvroDeserializer(SchemaRegistryClient(config.registry_conf()))
        self.seen: list[Observed] = []
        self.undecodable = 0

    def read(self, max_wait: float = 1.0) -> list[Observed]:
        from confluent_kafka.serialization import MessageField, SerializationContext

        ctx = SerializationContext(self.topic, MessageField.VALUE)
        while True:
            batch = self._consumer.consume(5000, max_wait)
            for msg in batch:
                if msg.error() is not None:
                    continue
                try:
                    record: dict[str, Any] = self._deserialize(msg.value(), ctx)
                except Exception:
                    self.undecodable += 1
                    continue
                key = record.get("trade_id") or record.get("quote_id")
                self.seen.append(
                    Observed(str(key), record.get("symbol"), record.get("sequence_number"), self.source,
                             (msg.partition(), msg.offset()))
                )  # fmt: skip
            if not batch:
                return list(self.seen)
            max_wait = 0.2

    def close(self) -> None:
        self._consumer.close()


class IcebergReader:
    """Scans every trade table of the scenario's namespace straight from the catalog (not via the writer)."""

    source = "iceberg:trades"

    def __init__(self, config: PlatformConfig) -> None:
        self.config = config

    def read(self) -> list[Observed]:
        from k2.platform.iceberg_tables import build_catalog

        try:
            catalog = build_catalog(self.config)
            idents = [i for i in catalog.list_tables(self.config.namespace) if i[-1].startswith("trades_")]
        except Exception as exc:  # no namespace yet, or the catalog is down: nothing observed this time
            log.info("iceberg reader: %s", exc)
            return []
        observed = []
        for ident in idents:
            rows = (
                catalog.load_table(ident)
                .scan(selected_fields=("trade_id", "symbol", "sequence_number"))
                .to_arrow()
                .to_pylist()
            )
            observed += [Observed(r["trade_id"], r["symbol"], r["sequence_number"], self.source) for r in rows]
        return observed


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
