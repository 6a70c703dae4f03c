"""The market-data producer: validate, serialise (Avro, schema registry), send idempotently to Kafka.

    with MarketDataProducer(PlatformConfig.from_endpoints(ep), observer=ledger.record) as producer:
        producer.produce_trade(trade)
        assert producer.flush(30) == 0

Guarantees and why:
- Idempotent, acks=all: a retried send is never duplicated and an acknowledged record is on every replica.
- Keyed by symbol: one symbol always maps to one partition, so per-symbol order holds.
- Invalid records never reach the data topics: they go to the dead-letter topic with the reason, and the
  caller gets `RecordRejected` (a ValidationError, a PlatformError). Nothing here crashes the caller's loop.
- Bounded memory: librdkafka's queue is capped; when full, `produce_*` waits at most `block_timeout`
  seconds and then raises `BackpressureError`.
- Every record's outcome reaches `observer(DeliveryEvent)`: acknowledged (partition, offset), failed
  (definitely not written), unknown (may or may not be written: timed out, purged in flight, still pending
  at close) or rejected (invalid, dead-lettered). A ledger can prove nothing acknowledged is lost.
- Hot path: validation, a pre-built AvroSerializer and context per topic, `produce` without a per-message
  poll; delivery reports are served every `poll_every` records. Without an observer only errors are reported.
Not thread-safe: use one producer per thread (delivery callbacks run in the thread that calls produce/flush).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, NoReturn

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, topic_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from k2.platform import planted
from k2.platform.config import PlatformConfig
from k2.platform.deadletter import DeadLetter, DeadLetterPublisher
from k2.platform.errors import (
    BackpressureError,
    PlatformError,
    ProducerClosed,
    ProducerError,
    RecordRejected,
    SchemaError,
    SchemaRegistryUnavailable,
    ValidationError,
)
from k2.platform.schemas import load_schema_str
from k2.platform.validation import DEFAULT_POLICY, ValidationPolicy, validate_quote, validate_trade

__all__ = ["DeliveryEvent", "MarketDataProducer", "Observer", "Status"]

log = logging.getLogger(__name__)

# errors after which the record is certainly not in the log; any other error may have been persisted
_NOT_WRITTEN = frozenset(
    {
        KafkaError._PURGE_QUEUE,
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.INVALID_RECORD,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError._INVALID_ARG,
        KafkaError.PRODUCER_FENCED,  # the broker rejected the batch: not appended
    }
)


class Status(StrEnum):
    ACKNOWLEDGED = "acknowledged"  # written, with partition and offset
    FAILED = "failed"  # certainly not written to the data topic
    UNKNOWN = "unknown"  # may or may not have been written (timeout, purge in flight, pending at close)
    REJECTED = "rejected"  # invalid; sent to the dead-letter topic instead


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    kind: str  # "trade" | "quote"
    record_id: str | None
    symbol: str | None
    sequence_number: int | None
    status: Status
    topic: str
    partition: int | None = None
    offset: int | None = None
    error: str | None = None
    reason_code: str | None = None
    enqueued_at: float = 0.0  # epoch seconds when produce_* was called
    completed_at: float = 0.0  # epoch seconds when the outcome was known


Observer = Callable[[DeliveryEvent], None]


@dataclass(frozen=True)
class _Route:
    kind: str
    id_field: str
    topic: str
    validate: Callable[..., dict[str, Any]]
    ctx: SerializationContext


def _record_id(route: _Route, record: Any) -> str | None:
    """The record's id as the caller gave it (the observer matches it exactly), when it is a string."""
    value = record.get(route.id_field) if isinstance(record, Mapping) else None
    return value if isinstance(value, str) else None


class MarketDataProducer:
    def __init__(
        self,
        config: PlatformConfig,
        *,
        observer: Observer | None = None,
        max_buffered_messages: int = 200_000,
        max_buffered_kbytes: int = 128 * 1024,
        block_timeout: float = 0.0,
        delivery_timeout_ms: int = 120_000,
        poll_every: int = 2000,
        policy: ValidationPolicy = DEFAULT_POLICY,
        kafka_overrides: Mapping[str, Any] | None = None,
        registry: SchemaRegistryClient | None = None,
        schemas: Mapping[str, int | str] | None = None,
        planted_bug: str | None = None,
    ) -> None:
        """`schemas`: per kind, a bundled schema version (`{"trade": 3}`) or an Avro schema's JSON text to
        write records with instead of v2 (its added fields are validated by type; see k2.platform.evolution)."""
        self.config = config
        self.planted_bug = planted.arm(planted_bug, "producer")  # test-only; see k2.platform.planted
        self.observer = observer
        self.block_timeout = block_timeout
        self.poll_every = poll_every
        self.policy = policy
        self._kafka_conf: dict[str, Any] = {
            **config.kafka_base(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 50,  # Tansu in s3 mode writes each produce request to S3: bigger batches cut its CPU 4x
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": max_buffered_messages,
            "queue.buffering.max.kbytes": max_buffered_kbytes,
            "delivery.timeout.ms": delivery_timeout_ms,
            "error_cb": self._on_client_error,
            # without an observer only failures need a report: cheaper by about a microsecond a record
            "delivery.report.only.error": observer is None,
            "on_delivery": self._on_failed_delivery,
            **dict(kafka_overrides or {}),
        }
        if self.planted_bug == "producer-retries-without-idempotence":
            self._kafka_conf["enable.idempotence"] = False  # retries stay on: a retried batch may be written twice
        self._producer = Producer(self._kafka_conf)
        self._fatal: KafkaError | None = None
        self._closed = False
        self._since_poll = 0
        self._pending: dict[int, tuple[Any, ...]] = {}
        self._token = 0
        # "acknowledged" is counted only with an observer (without one librdkafka reports failures only)
        self.stats = {"sent": 0, "acknowledged": 0, "failed": 0, "unknown": 0, "rejected": 0}
        self._last_log: dict[str, float] = {}
        self._registry = registry or SchemaRegistryClient(config.registry_conf())
        serializer_conf = {"auto.register.schemas": True, "subject.name.strategy": topic_subject_name_strategy}
        self._schema_str = {kind: _schema_text(kind, (schemas or {}).get(kind, 2)) for kind in ("trade", "quote")}
        self._serializers = {
            kind: AvroSerializer(self._registry, self._schema_str[kind], conf=serializer_conf)
            for kind in ("trade", "quote")
        }
        checks = {kind: _validator(kind, self._schema_str[kind]) for kind in ("trade", "quote")}
        routes = (("trade", config.topics.trades, checks["trade"]), ("quote", config.topics.quotes, checks["quote"]))
        self._trade, self._quote = (
            _Route(kind, f"{kind}_id", topic, check, SerializationContext(topic, MessageField.VALUE))
            for kind, topic, check in routes
        )
        self._dlq = DeadLetterPublisher(self._producer, config.topics.deadletter)
        self._registered: set[str] = set()
        for route in (self._trade, self._quote):
            try:
                self._register(route)
            except SchemaRegistryUnavailable as exc:
                log.warning("%s (will retry on the first record)", exc)

    # ---- the API ----------------------------------------------------------------------------------

    def produce_trade(self, trade: Mapping[str, Any]) -> str:
        """Validate and enqueue one trade; returns its trade_id. Raises RecordRejected, BackpressureError,
        SchemaRegistryUnavailable or ProducerClosed (all PlatformError)."""
        return self._produce(self._trade, trade)

    def produce_quote(self, quote: Mapping[str, Any]) -> str:
        """Validate and enqueue one quote; returns its quote_id. Same errors as produce_trade."""
        return self._produce(self._quote, quote)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait up to `timeout` for every enqueued record's outcome; returns how many are still undelivered."""
        if self._closed:
            return 0
        remaining = self._producer.flush(timeout)
        if remaining:
            self._log_limited(
                "flush", "kafka: %d record(s) still unacknowledged after %.1fs; Kafka may be down or slow. "
                "Remedy: check Kafka with `k2 stack status`; they stay queued and are retried", remaining, timeout
            )  # fmt: skip
        return remaining

    def poll(self, timeout: float = 0.0) -> int:
        """Serve pending delivery reports (the observer is called from here, flush and produce_*)."""
        if self._closed:
            return 0
        return self._producer.poll(timeout)

    def pending(self) -> int:
        """Records (and dead letters) enqueued but without an outcome yet (serves waiting reports first)."""
        if self._closed:
            return 0
        self._producer.poll(0)
        return len(self._producer)

    def close(self, timeout: float = 30.0) -> int:
        """Flush, then give up on what is left: reported as failed (never sent) or unknown. Returns that count."""
        if self._closed:
            return 0
        remaining = self._producer.flush(timeout)
        if remaining:
            self._abandon(self._producer, "producer closed with records unacknowledged")
        self._closed = True
        self._producer.close()
        return remaining

    def __enter__(self) -> MarketDataProducer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- the hot path -----------------------------------------------------------------------------

    def _produce(self, route: _Route, record: Mapping[str, Any]) -> str:
        """Exactly one outcome reaches the observer for every call, whatever goes wrong: acknowledged, failed or
        unknown (later, from the delivery report) once the record is handed to the client, else failed or
        rejected here, with a typed error (a PlatformError) raised to the caller."""
        enqueued_at = time.time()
        token = None
        try:
            if self._closed:
                raise ProducerClosed(f"produce_{route.kind} called after close()")
            if self._fatal is not None:
                self._recreate()
            valid, value = self._serialise(route, record, enqueued_at)
            if self.observer is not None:
                self._token += 1
                token = self._token
                info = (route.kind, valid[route.id_field], valid["symbol"], valid["sequence_number"], route.topic,
                        enqueued_at)  # fmt: skip
                self._pending[token] = info
            callback = None if token is None else functools.partial(self._on_delivery, token)
            self._hand_over(route, value, valid, callback)
        except RecordRejected:
            raise  # dead-lettered and reported as rejected
        except PlatformError as exc:  # refused before the client took it: certainly not written
            self._unsent(route, record, token, enqueued_at, exc)
            raise
        except Exception as exc:
            error = ProducerError(
                f"{route.kind} {str(_record_id(route, record))[:130]!r} not sent: {type(exc).__name__}: "
                f"{str(exc)[:300]}",
                remedy="the record was not written (reported as failed to the observer); fix the cause and resend",
            )
            self._unsent(route, record, token, enqueued_at, error)
            raise error from exc
        self.stats["sent"] += 1
        self._since_poll += 1
        if self._since_poll >= self.poll_every:
            self._since_poll = 0
            self._serve_reports()
        return valid[route.id_field]

    def _serialise(self, route: _Route, record: Mapping[str, Any], enqueued_at: float) -> tuple[dict[str, Any], bytes]:
        """The validated record and its Avro bytes; an invalid record is dead-lettered (RecordRejected)."""
        try:
            valid = route.validate(record, policy=self.policy)
        except ValidationError as exc:
            self._reject(route, record, exc, enqueued_at)
        try:
            if route.kind not in self._registered:
                self._register(route)
            return valid, self._serializers[route.kind](valid, route.ctx)
        except (SchemaRegistryUnavailable, ProducerError):
            raise
        except SchemaRegistryError as exc:
            raise self._registry_error(route, exc) from exc
        except Exception as exc:  # the serializer refused a validated record: a schema/validation mismatch
            reason = ValidationError(
                "<record>", f"could not be serialised: {str(exc)[:300]}", reason_code="not_serializable",
                record_id=_record_id(route, record),
            )  # fmt: skip
            self._reject(route, record, reason, enqueued_at)

    def _hand_over(self, route: _Route, value: bytes, valid: dict[str, Any], callback: Any) -> None:
        """Give the record to librdkafka; from here on its delivery report carries the outcome."""
        try:
            self._producer.produce(route.topic, value, valid["symbol"], on_delivery=callback)
        except BufferError:
            self._produce_when_room(route, value, valid["symbol"], callback, valid)
        except KafkaException as exc:  # refused outright (e.g. larger than message.max.bytes): not written
            raise ProducerError(
                f"{route.kind} {valid[route.id_field]} refused by the Kafka client: {exc.args[0].str()}",
                remedy="the record was not written (reported as failed); check its size and the producer settings",
            ) from exc

    def _serve_reports(self) -> None:
        try:
            self._producer.poll(0)
        except Exception:  # the record was handed over: its outcome comes with its delivery report
            log.exception("kafka-producer: serving delivery reports failed; continuing")

    def _produce_when_room(
        self, route: _Route, value: bytes, symbol: str, callback: Any, valid: dict[str, Any]
    ) -> None:
        deadline = time.monotonic() + self.block_timeout
        while True:
            self._producer.poll(min(0.05, max(0.0, deadline - time.monotonic())))
            try:
                self._producer.produce(route.topic, value, symbol, on_delivery=callback)
                return
            except BufferError:
                if time.monotonic() < deadline:
                    continue
            error = BackpressureError(
                f"buffer full ({len(self._producer)} records awaiting Kafka acknowledgement, waited "
                f"{self.block_timeout:.1f}s); {route.kind} {valid[route.id_field]} was not sent"
            )
            self._log_limited("backpressure", "%s", error)
            raise error

    # ---- outcomes ---------------------------------------------------------------------------------

    def _on_delivery(self, token: int, err: KafkaError | None, msg: Message) -> None:
        info = self._pending.pop(token, None)
        if info is None:
            return
        kind, record_id, symbol, sequence, topic, enqueued_at = info
        if err is None:
            status, error = Status.ACKNOWLEDGED, None
            self.stats["acknowledged"] += 1
        else:
            status = Status.FAILED if err.code() in _NOT_WRITTEN else Status.UNKNOWN
            error = err.str()
            self.stats[status.value] += 1
            self._log_delivery_error(kind, record_id, topic, err)
            if err.fatal() or err.code() == KafkaError.PRODUCER_FENCED:
                # Seen after a broker outage longer than delivery.timeout.ms: the broker fences the
                # idempotent producer per message without a client-level fatal error, and every later
                # record fails too. Rebuild the producer before the next record.
                self._fatal = self._fatal or err
        self._emit(
            DeliveryEvent(
                kind, record_id, symbol, sequence, status, topic, msg.partition(), msg.offset(), error,
                None, enqueued_at, time.time(),
            )
        )  # fmt: skip

    def _on_failed_delivery(self, err: KafkaError | None, msg: Message) -> None:
        """The report for records sent without an observer (only failures arrive here)."""
        if err is not None:
            status = Status.FAILED if err.code() in _NOT_WRITTEN else Status.UNKNOWN
            self.stats[status.value] += 1
            self._log_delivery_error("record", (msg.key() or b"").decode(errors="replace"), msg.topic() or "", err)

    def _emit(self, event: DeliveryEvent) -> None:
        if self.observer is None:
            return
        try:
            self.observer(event)
        except Exception:  # an observer bug must not break delivery reporting
            log.exception("kafka-producer: observer raised on %s; continuing", event)

    def _unsent(self, route: _Route, record: Any, token: int | None, enqueued_at: float, error: Exception) -> None:
        """Report a record that never reached the client as failed (and forget its pending delivery)."""
        if token is not None:
            self._pending.pop(token, None)
        self.stats["failed"] += 1
        get = record.get if isinstance(record, Mapping) else (lambda _k: None)
        symbol, sequence = get("symbol"), get("sequence_number")
        self._emit(
            DeliveryEvent(
                route.kind, _record_id(route, record), symbol if isinstance(symbol, str) else None,
                sequence if isinstance(sequence, int) else None, Status.FAILED, route.topic, error=str(error),
                enqueued_at=enqueued_at, completed_at=time.time(),
            )
        )  # fmt: skip

    def _reject(self, route: _Route, record: Any, error: ValidationError, enqueued_at: float) -> NoReturn:
        """Dead-letter an invalid record, report it, and raise RecordRejected (never returns)."""
        self.stats["rejected"] += 1
        letter = DeadLetter.from_validation("producer", route.kind, error, record)
        sent = self._dlq.publish(letter)
        rejected = RecordRejected(error, dead_letter_topic=self._dlq.topic if sent else None)
        get = record.get if isinstance(record, Mapping) else (lambda _k: None)
        sequence = get("sequence_number")
        self._emit(
            DeliveryEvent(
                route.kind, error.record_id, get("symbol") if isinstance(get("symbol"), str) else None,
                sequence if isinstance(sequence, int) else None, Status.REJECTED, route.topic, error=str(rejected),
                reason_code=error.reason_code, enqueued_at=enqueued_at, completed_at=time.time(),
            )
        )  # fmt: skip
        raise rejected from error

    # ---- failures of the services -----------------------------------------------------------------

    def _register(self, route: _Route) -> None:
        """Register the schema now (not on the first record), so a registry outage shows at startup."""
        try:
            self._registry.register_schema(f"{route.topic}-value", Schema(self._schema_str[route.kind], "AVRO"))
        except Exception as exc:
            raise self._registry_error(route, exc) from exc
        self._registered.add(route.kind)

    def _registry_error(self, route: _Route, exc: Exception) -> ProducerError | SchemaRegistryUnavailable:
        if isinstance(exc, SchemaRegistryError) and 400 <= exc.http_status_code < 500:
            return ProducerError(
                f"schema registry refused the {route.kind} schema for {route.topic}-value: {exc}",
                remedy="make the schema compatible with the registered versions, or change the subject's "
                "compatibility level",
            )
        return SchemaRegistryUnavailable(
            f"cannot register or look up the {route.kind} schema at {self.config.schema_registry_url}: "
            f"{type(exc).__name__}: {exc}; the record was not sent"
        )

    def _on_client_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
            log.error(
                "kafka: fatal producer error %s; the producer is rebuilt before the next record and records in "
                "flight are reported as unknown. Remedy: check the broker log (`k2 stack logs kafka`)",
                err.str(),
            )
            return
        self._log_limited(
            f"client:{err.code()}", "kafka: %s (at %s). Remedy: check Kafka with `k2 stack status`; records stay "
            "buffered and are retried until delivery.timeout.ms", err.str(), self.config.kafka_bootstrap,
        )  # fmt: skip

    def _log_delivery_error(self, kind: str, record_id: str, topic: str, err: KafkaError) -> None:
        self._log_limited(
            f"delivery:{err.code()}", "kafka: %s %s to %s not acknowledged: %s. Remedy: check Kafka; the observer "
            "got the outcome, resend if your ledger says so", kind, record_id, topic, err.str(),
        )  # fmt: skip

    def _recreate(self) -> None:
        """A fatal error (e.g. PRODUCER_FENCED) makes a librdkafka producer useless: replace it."""
        old, err = self._producer, self._fatal
        self._abandon(old, f"fatal producer error {err.str() if err else ''}")
        self._fatal = None
        self._producer = Producer(self._kafka_conf)
        self._dlq.producer = self._producer
        log.warning("kafka-producer: producer recreated after fatal error %s", err.str() if err else "")

    def _abandon(self, producer: Producer, why: str) -> None:
        """Purge what a producer still holds; whatever gets no report is unknown (it may be in the log)."""
        producer.purge(in_queue=True, in_flight=True, blocking=False)
        producer.flush(1.0)
        for kind, record_id, symbol, sequence, topic, enqueued_at in self._pending.values():
            self.stats["unknown"] += 1
            self._emit(
                DeliveryEvent(
                    kind, record_id, symbol, sequence, Status.UNKNOWN, topic, error=why,
                    enqueued_at=enqueued_at, completed_at=time.time(),
                )
            )  # fmt: skip
        self._pending.clear()

    def _log_limited(self, key: str, message: str, *args: Any, every: float = 5.0) -> None:
        now = time.monotonic()
        if now - self._last_log.get(key, -every) >= every:
            self._last_log[key] = now
            log.error(message, *args)


def _schema_text(kind: str, schema: int | str) -> str:
    return load_schema_str(kind, schema) if isinstance(schema, int) else schema


def _validator(kind: str, schema_str: str) -> Callable[..., dict[str, Any]]:
    """The bundled validation for the v2 schema; for a newer one, that plus its added fields by type."""
    if schema_str == load_schema_str(kind):
        return validate_trade if kind == "trade" else validate_quote
    from k2.platform.evolution import validator

    try:
        return validator(kind, json.loads(schema_str))
    except (ValueError, AttributeError) as exc:
        raise SchemaError(f"the {kind} schema given to the producer is not a JSON Avro record: {exc}") from exc
