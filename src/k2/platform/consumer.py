"""The writer's input side: consuming the trades and quotes topics, and turning values back into records.

A value is Confluent wire format (magic byte 0, 4-byte schema id, Avro body). Decoding is done here
rather than by AvroDeserializer so each failure is classified precisely, because the two kinds must
be handled in opposite ways:
- the record is bad (garbage bytes, unknown schema id, a schema that does not resolve to ours, a
  value that fails validation such as a wrong asset class): `ValidationError` -> dead-letter it, move on;
- the registry cannot answer (down, 5xx, timeout): `SchemaRegistryUnavailable` -> retry the same
  message later, never skip it.
"""

from __future__ import annotations

import io
import json
import logging
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

import fastavro
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from k2.platform.config import PlatformConfig
from k2.platform.errors import KafkaUnavailable, SchemaRegistryUnavailable, ValidationError
from k2.platform.evolution import ExtraField, extra_fields, reader_schema
from k2.platform.schemas import load_schema_str, parsed_schema
from k2.platform.validation import DEFAULT_POLICY, ValidationPolicy, validate_quote, validate_trade

__all__ = ["MarketDataConsumer", "RecordDecoder"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">BI")
GROWTH_CHECK_S = 2.0  # how often a group member compares the topics' partition counts with its assignment's
_ID_FIELD = {"trade": "trade_id", "quote": "quote_id"}


class RecordDecoder:
    """Decode and validate one message value of a trades or quotes topic."""

    def __init__(
        self,
        config: PlatformConfig,
        *,
        registry: SchemaRegistryClient | None = None,
        policy: ValidationPolicy = DEFAULT_POLICY,
    ) -> None:
        self.config = config
        self.registry = registry or SchemaRegistryClient(config.registry_conf())
        self.policy = policy
        self._validators: dict[str, Callable[..., dict[str, Any]]] = {"trade": validate_trade, "quote": validate_quote}
        self._readers = {kind: parsed_schema(kind) for kind in _ID_FIELD}
        self._canonical = {kind: _canonical(load_schema_str(kind)) for kind in _ID_FIELD}
        # (schema id, kind) -> (writer schema, reader schema or None when identical, extra fields)
        self._writers: dict[tuple[int, str], tuple[Any, Any, dict[str, ExtraField]]] = {}

    def decode(self, kind: str, value: bytes | None) -> tuple[dict[str, Any], int]:
        """(validated record, schema id); ValidationError if the record is bad, SchemaRegistryUnavailable
        if it cannot be told yet."""
        if not value:
            raise ValidationError("<value>", "is empty (tombstone or blank message)", reason_code="empty_value")
        if len(value) < 6:
            raise ValidationError("<value>", f"is {len(value)} bytes; too short for Avro", reason_code="undecodable")
        magic, schema_id = _HEADER.unpack_from(value)
        if magic != 0:
            raise ValidationError(
                "<value>", f"starts with byte {magic:#04x}, not the Confluent magic byte 0", reason_code="undecodable"
            )
        writer, reader, extras = self._schemas(schema_id, kind)
        body = io.BytesIO(value)
        body.seek(_HEADER.size)
        try:
            record = fastavro.schemaless_reader(body, writer, reader)
        except Exception as exc:
            code = "schema_mismatch" if reader is not None else "undecodable"
            raise ValidationError(
                "<value>", f"does not decode with schema {schema_id}: {type(exc).__name__}: {exc}", reason_code=code
            ) from None
        if body.tell() != len(value):
            raise ValidationError(
                "<value>",
                f"has {len(value) - body.tell()} bytes left after the record (corrupt or wrong schema id)",
                reason_code="undecodable",
            )
        if not isinstance(record, dict):
            raise ValidationError("<value>", f"decodes to {type(record).__name__}", reason_code="schema_mismatch")
        if not extras:
            return self._validators[kind](record, policy=self.policy), schema_id
        values = {name: record.pop(name, None) for name in extras}  # typed by Avro already
        return {**self._validators[kind](record, policy=self.policy), **values}, schema_id

    def extra_fields(self, schema_id: int, kind: str) -> dict[str, ExtraField]:
        """The fields records of `schema_id` carry beyond the bundled schema (after decode() saw the id)."""
        cached = self._writers.get((schema_id, kind))
        return cached[2] if cached is not None else {}

    def _schemas(self, schema_id: int, kind: str) -> tuple[Any, Any, dict[str, ExtraField]]:
        cached = self._writers.get((schema_id, kind))
        if cached is not None:
            return cached
        try:
            registered = self.registry.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise ValidationError(
                    "<schema_id>", f"{schema_id} is not known to the schema registry", reason_code="unknown_schema_id"
                ) from None
            raise SchemaRegistryUnavailable(f"looking up schema id {schema_id}: {exc}") from exc
        except Exception as exc:
            raise SchemaRegistryUnavailable(
                f"looking up schema id {schema_id} at {self.config.schema_registry_url}: {type(exc).__name__}: {exc}"
            ) from exc
        if (registered.schema_type or "AVRO") != "AVRO" or not registered.schema_str:
            raise ValidationError(
                "<schema_id>",
                f"{schema_id} is a {registered.schema_type} schema, not Avro",
                reason_code="schema_mismatch",
            )
        try:
            as_json = json.loads(registered.schema_str)
            writer = fastavro.parse_schema(as_json)
        except Exception as exc:
            raise ValidationError(
                "<schema_id>", f"{schema_id} does not parse as Avro: {exc}", reason_code="schema_mismatch"
            ) from None
        if _canonical(registered.schema_str) == self._canonical[kind]:
            entry: tuple[Any, Any, dict[str, ExtraField]] = (writer, None, {})
        else:
            try:  # a newer schema: its added fields are read too, and must be ones the tables can take
                extras = extra_fields(as_json, kind)
            except ValidationError as exc:
                raise ValidationError(
                    exc.field, f"{exc.reason}, in schema id {schema_id}", reason_code=exc.reason_code,
                    remedy=exc.remedy,
                ) from None  # fmt: skip
            entry = (writer, reader_schema(kind, extras) if extras else self._readers[kind], extras)
        self._writers[(schema_id, kind)] = entry
        return entry


def _canonical(schema_str: str) -> str:
    try:
        return fastavro.schema.to_parsing_canonical_form(json.loads(schema_str))
    except Exception:
        return schema_str


class MarketDataConsumer:
    """The Kafka side of the writer: one consumer of the trades and quotes topics.

    In a group (default) or, with `assign_all`, owning every partition without membership, so a restarted
    single writer resumes at once from the committed offsets instead of waiting out its dead predecessor's
    session and a rebalance. Offsets are only ever committed explicitly. `kafka_error` is set while the
    broker is unreachable and cleared by `probe()` once it answers again.
    """

    def __init__(
        self,
        config: PlatformConfig,
        group_id: str,
        *,
        assign_all: bool = False,
        on_assign: Callable[[list[TopicPartition]], None] | None = None,
        on_revoke: Callable[[list[TopicPartition]], None] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.topics = [config.topics.trades, config.topics.quotes]
        self.bootstrap = config.kafka_bootstrap
        self.assign_all = assign_all
        self.assigned: list[TopicPartition] = []
        self.kafka_error: KafkaUnavailable | None = None
        self._on_assign_cb, self._on_revoke_cb = on_assign, on_revoke
        self._paused = False
        self._next_probe = 0.0
        self._partition_counts: dict[str, int] = {}  # per topic, when the group last assigned
        self._next_growth_check = 0.0
        self._last_assignment: set[tuple[str, int]] = set()
        self.needs_rejoin = False
        self._conf = {
            **config.kafka_base(),
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,  # Tansu: a join takes about half of this
            "fetch.wait.max.ms": 100,
            "queued.max.messages.kbytes": 32768,  # bounds the prefetch
            "error_cb": self._on_error,
            **dict(overrides or {}),
        }
        self._consumer = Consumer(self._conf)

    def start(self) -> None:
        if not self.assign_all:
            self._consumer.subscribe(self.topics, on_assign=self._assigned, on_revoke=self._revoked)
            return
        metadata = self._consumer.list_topics(timeout=30).topics
        partitions = [TopicPartition(t, p) for t in self.topics for p in sorted(metadata[t].partitions)]
        self._consumer.assign(partitions)
        self._assigned(self._consumer, partitions)

    def consume(self, count: int, timeout: float) -> list[Message]:
        messages = self._consumer.consume(max(1, count), timeout)
        if self.kafka_error is not None and any(m.error() is None for m in messages):
            self.kafka_error = None
        return messages

    def pause(self, paused: bool) -> None:
        """Stop (or restart) fetching; consume() still keeps the group membership alive while paused."""
        if paused != self._paused and self.assigned:
            (self._consumer.pause if paused else self._consumer.resume)(self.assigned)
            self._paused = paused

    def rewind(self, remaining: list[Message]) -> None:
        """Seek each partition back to its first message not yet handled, so nothing is skipped."""
        first: dict[tuple[str, int], int] = {}
        for message in remaining:
            if message.error() is None:
                first.setdefault((message.topic(), message.partition()), message.offset())
        for (topic, partition), offset in first.items():
            self._consumer.seek(TopicPartition(topic, partition, offset))

    def commit(self, offsets: list[TopicPartition]) -> None:
        self._consumer.commit(offsets=offsets, asynchronous=False)

    def probe(self) -> None:
        """While the broker is reported down, ask it every 2 s whether it answers again."""
        if self.kafka_error is None or time.monotonic() < self._next_probe:
            return
        self._next_probe = time.monotonic() + 2.0
        try:
            self._consumer.list_topics(timeout=1.0)
        except Exception:
            return
        self.kafka_error = None

    def close(self) -> None:
        self._consumer.close()

    def rejoin(self) -> None:
        """Leave the group (revoking, so the owner flushes) and join again as a new member.

        Why: when a subscribed topic grows, Tansu 0.6 answers the group's re-join with the assignment of the
        previous generation, so the new partitions are never consumed (measured: they are assigned only once
        the group's membership changes). A new member id is such a change.
        """
        log.warning("iceberg-writer: %s grew; re-joining the group as a new member", ", ".join(self.topics))
        self.needs_rejoin = False
        self._revoked(self._consumer, list(self.assigned))  # the owner flushes and commits while it still can
        self._consumer.close()
        self._consumer = Consumer(self._conf)
        self.start()

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # librdkafka keeps a partition's pause through a rebalance when it comes back to the same member
        # (confluentinc/librdkafka#1849); resume what is assigned so "not paused" is true, or a writer that was
        # backing off when its group rebalanced never fetches again (found by `k2 chaos explore`).
        if partitions:
            _consumer.resume(partitions)
        self.assigned, self._paused = list(partitions), False
        log.info("iceberg-writer: assigned %s", [(tp.topic, tp.partition) for tp in partitions])
        if not self.assign_all:
            self._note_partition_counts(self._last_assignment)
            self._last_assignment = {(tp.topic, tp.partition) for tp in partitions}
        if self._on_assign_cb is not None:
            self._on_assign_cb(partitions)

    def check_growth(self) -> None:
        """Every few seconds between rebalances: has a subscribed topic more partitions than the assignment was
        made for? Then the member assigned its partition 0 re-joins (see rejoin): one member, so that members do
        not leave and join at the same moment (that left a Tansu 0.6 group without any assignment for a minute)."""
        if self.assign_all or not self.assigned or time.monotonic() < self._next_growth_check:
            return  # (not while joining: the assignment being made is judged when it arrives)
        self._next_growth_check = time.monotonic() + GROWTH_CHECK_S
        counts = self._read_partition_counts()
        if counts is None:
            return
        grown = [t for t, n in counts.items() if n > self._partition_counts.get(t, n)]
        self._partition_counts = counts  # judged once
        owned = {(tp.topic, tp.partition) for tp in self.assigned}
        if any((topic, 0) in owned for topic in grown):
            self.needs_rejoin = True

    def _note_partition_counts(self, previous: set[tuple[str, int]]) -> None:
        """At each assignment: a topic grew, yet this member got exactly its previous assignment back? That is
        Tansu's stale answer (see rejoin); a changed assignment was made for the new partition counts."""
        counts = self._read_partition_counts()
        if counts is None:  # the broker is slow: check_growth() looks again
            return
        grown = [t for t, n in counts.items() if n > self._partition_counts.get(t, n)]
        self._partition_counts = counts
        owned = {(tp.topic, tp.partition) for tp in self.assigned}
        if owned == previous and any((topic, 0) in owned for topic in grown):
            self.needs_rejoin = True

    def _read_partition_counts(self) -> dict[str, int] | None:
        try:
            metadata = self._consumer.list_topics(timeout=5.0).topics
        except Exception as exc:
            log.info("iceberg-writer: partition counts not read: %s", exc)
            return None
        return {t: len(metadata[t].partitions) for t in self.topics if t in metadata}

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._on_revoke_cb is not None:
            self._on_revoke_cb(partitions)
        self.assigned, self._paused = [], False

    def _on_error(self, err: KafkaError) -> None:
        log.warning("kafka: %s (at %s)", err.str(), self.bootstrap)
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self.kafka_error = KafkaUnavailable(f"the writer's consumer lost the broker: {err.str()}")
