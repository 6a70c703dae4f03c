"""Redrive dead letters: put records the writer refused for a reason that has since passed back on their source
topic, exactly once. The case it exists for: a record framed with a schema id the registry did not know (its
storage was rolled back) is dead-lettered with that id; once the id is known again, redriving it lets the
writer process it like any other record.

    result = redrive(config, reasons={"unknown_schema_id"})     # RedriveResult(redriven=..., waiting=...)

How: the dead-letter topic is read with assigned partitions and group `k2-redrive`'s committed offsets; each
batch is one Kafka transaction that publishes every redrivable letter's original bytes to its source topic
(keyed by the record's symbol, as the producer keys it, with header `k2-redriven-from: topic/partition/offset`)
and commits the group's position past it. The writer reads committed data only, so a redrive killed mid-batch
publishes nothing (its transaction is aborted when the next redrive starts with the same transactional id) -
on a broker that hides aborted transactions from read_committed consumers. Tansu 0.6 does not (measured: it
hides an open transaction, then serves it once aborted), so there a redrive killed mid-batch can write that
batch twice; the checker reports such duplicates in Iceberg.

Letters with other reasons are passed over. At the first letter whose schema id is still unknown the redrive
stops: that letter and every later one wait for the next run (`waiting` says which id).
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from k2.platform.config import PlatformConfig
from k2.platform.deadletter import DeadLetter
from k2.platform.errors import KafkaUnavailable, SchemaRegistryUnavailable

__all__ = ["REDRIVEN_HEADER", "RedriveResult", "redrive"]

log = logging.getLogger(__name__)
REDRIVEN_HEADER = "k2-redriven-from"
GROUP = "k2-redrive"
BATCH = 500


@dataclass
class RedriveResult:
    redriven: list[dict[str, Any]] = field(default_factory=list)  # {"from": [topic, p, o], "to": [topic, p, o]}
    passed_over: int = 0  # letters of other reasons, or without the original bytes
    waiting: dict[str, Any] | None = None  # the first letter whose schema id is still unknown

    def to_dict(self) -> dict[str, Any]:
        return {"redriven": len(self.redriven), "passed_over": self.passed_over, "waiting": self.waiting}


def redrive(
    config: PlatformConfig, *, reasons: frozenset[str] | set[str] = frozenset({"unknown_schema_id"}), idle: float = 1.0
) -> RedriveResult:
    """Redrive every dead letter with one of `reasons` whose record can be read now; see the module doc."""
    registry = SchemaRegistryClient(config.registry_conf())
    sources = {config.topics.trades, config.topics.quotes}
    consumer = Consumer({**config.kafka_base(), "group.id": GROUP, "client.id": "redrive", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})  # fmt: skip
    transactional_id = f"{GROUP}-{config.topics.deadletter}"  # the same every run: a dead run's batch is aborted
    producer = Producer({**config.kafka_base(), "client.id": "redrive", "transactional.id": transactional_id})
    result = RedriveResult()
    try:
        producer.init_transactions(30)
        consumer.assign(_start_positions(consumer, config.topics.deadletter))
        while result.waiting is None:
            batch = [m for m in consumer.consume(BATCH, idle) if m.error() is None]
            if not batch:
                break
            _redrive_batch(batch, consumer, producer, registry, reasons, sources, result)
    except KafkaException as exc:
        raise KafkaUnavailable(f"redriving {config.topics.deadletter}: {exc}") from exc
    finally:
        consumer.close()
    log.info("redrive: %s", result.to_dict())
    return result


def _start_positions(consumer: Consumer, topic: str) -> list[TopicPartition]:
    partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
    committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=30)
    return [TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING) for tp in committed]


def _redrive_batch(
    batch: list[Any], consumer: Consumer, producer: Producer, registry: SchemaRegistryClient, reasons: Any,
    sources: set[str], result: RedriveResult,
) -> None:  # fmt: skip
    producer.begin_transaction()
    sent: list[dict[str, Any]] = []
    positions: dict[int, int] = {}
    for message in batch:
        letter = DeadLetter.from_json(message.value())
        raw = letter.raw_payload()
        if letter.reason_code not in reasons or raw is None or letter.source_topic not in sources:
            result.passed_over += 1
        else:
            symbol = _symbol(registry, raw, letter.schema_id)
            if symbol is False:  # it does not decode with what its id names now: nothing to redrive
                result.passed_over += 1
                positions[message.partition()] = message.offset() + 1
                continue
            if symbol is None:  # the id is still unknown: stop before this letter
                result.waiting = {"schema_id": letter.schema_id, "at": [message.topic(), message.partition(),
                                                                       message.offset()]}  # fmt: skip
                break
            origin = [letter.source_topic, letter.source_partition, letter.source_offset]
            headers = [(REDRIVEN_HEADER, "/".join(str(x) for x in origin).encode())]
            entry: dict[str, Any] = {"from": origin}
            producer.produce(letter.source_topic, raw, symbol.encode(), headers=headers,
                             on_delivery=lambda err, msg, entry=entry: entry.update(to=[msg.topic(), msg.partition(),
                                                                                         msg.offset()]))  # fmt: skip
            sent.append(entry)
        positions[message.partition()] = message.offset() + 1
    offsets = [TopicPartition(batch[0].topic(), p, o) for p, o in positions.items()]
    if offsets:
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
    producer.commit_transaction(30)
    result.redriven += sent


def _symbol(registry: SchemaRegistryClient, raw: bytes, schema_id: int | None) -> str | bool | None:
    """The record's symbol (its key), decoded with the schema its id names now; None while the id is unknown,
    False when the bytes do not decode with it."""
    if schema_id is None:
        return None
    try:
        schema = registry.get_schema(schema_id)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            return None
        raise SchemaRegistryUnavailable(f"looking up schema id {schema_id} to redrive: {exc}") from exc
    try:
        parsed = fastavro.parse_schema(json.loads(schema.schema_str))
        record = fastavro.schemaless_reader(io.BytesIO(raw[5:]), parsed, None)
    except Exception as exc:
        log.warning("redrive: a letter does not decode with schema id %s: %s", schema_id, exc)
        return False
    symbol = record.get("symbol") if isinstance(record, dict) else None
    return symbol if isinstance(symbol, str) else ""
