"""Dead-letter records: every record the pipeline refuses lands on one topic, as JSON, with the reason.

A dead-letter record says who refused it (`stage`: producer or writer), why (`reason_code`, stable,
plus a readable `reason` and the offending `field`), which record (`record_id`, and for the writer
the source topic/partition/offset, which also lets a reader drop the duplicates a writer restart can
produce), and the original payload: the record as JSON when it was a mapping, else base64 bytes.

A letter is strict JSON (no NaN/Infinity literals; text that is not valid Unicode, such as a lone surrogate,
kept as its escape) and always fits the broker: one too large (an 800 KB poison message, a 2 MB field) is
truncated, keeping the reason, the ids and the source offsets, never dropped (`truncated`, `payload_size`).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from k2.platform.errors import ValidationError
from k2.platform.errors import valid_text as text

__all__ = ["MAX_LETTER_BYTES", "DeadLetter", "DeadLetterPublisher", "jsonable"]

log = logging.getLogger(__name__)

# librdkafka refuses messages over message.max.bytes (1,000,000 by default) before they reach the broker
MAX_LETTER_BYTES = 512 * 1024
_CLIP = 1024  # characters kept of each text field of a letter that had to be truncated


def jsonable(value: Any) -> Any:
    """A strict-JSON-safe copy: Decimals as exact strings, datetimes as ISO-8601, bytes as base64, non-finite
    floats as text ('nan', 'inf'), strings as valid Unicode."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {text(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, Enum):
        return value.value
    if value is None or isinstance(value, int | float | bool):
        return value
    return text(repr(value))


@dataclass(frozen=True)
class DeadLetter:
    stage: str  # "producer" | "writer"
    kind: str  # "trade" | "quote" | "unknown"
    reason_code: str
    reason: str
    field: str | None = None
    record_id: str | None = None
    payload: Any = None  # the record as JSON-safe values, when it could be read
    payload_base64: str | None = None  # the raw bytes, when it could not
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    schema_id: int | None = None
    refused_at: float = 0.0  # epoch seconds
    truncated: bool = False  # the payload (and long texts) were cut to fit the broker
    payload_size: int | None = None  # bytes of the original payload, when truncated

    @classmethod
    def from_validation(cls, stage: str, kind: str, error: ValidationError, payload: Any, **where: Any) -> DeadLetter:
        return cls(
            stage=stage,
            kind=kind,
            reason_code=error.reason_code,
            reason=text(error.reason),
            field=text(error.field),
            record_id=text(error.record_id) if error.record_id is not None else None,
            payload=jsonable(payload),
            refused_at=time.time(),
            **where,
        )

    def with_raw(self, raw: bytes) -> DeadLetter:
        """The same letter carrying the undecoded message bytes (and their schema id, if framed)."""
        schema_id = int.from_bytes(raw[1:5], "big") if len(raw) >= 5 and raw[0] == 0 else None
        return replace(self, payload_base64=base64.b64encode(raw).decode(), schema_id=schema_id)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True, allow_nan=False).encode()

    def fitted(self, max_bytes: int = MAX_LETTER_BYTES) -> tuple[DeadLetter, bytes]:
        """This letter and its JSON, truncated to at most `max_bytes` if needed: the payload is cut to a
        prefix (as base64) and long texts are clipped; reason, ids and source offsets are kept."""
        data = self.to_json()
        if len(data) <= max_bytes:
            return self, data
        original = self.raw_payload()
        if original is None:
            original = json.dumps(self.payload, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
        clipped = {
            name: value[:_CLIP] + "..." if isinstance(value, str) and len(value) > _CLIP else value
            for name, value in asdict(self).items()
            if name not in ("payload", "payload_base64")
        }
        small = replace(DeadLetter(**clipped), truncated=True, payload_size=len(original))
        room = max(0, (max_bytes - len(small.to_json()) - 64) * 3 // 4)  # base64 grows 4/3, plus the key
        letter = replace(small, payload_base64=base64.b64encode(original[:room]).decode())
        return letter, letter.to_json()

    @classmethod
    def from_json(cls, data: bytes | str) -> DeadLetter:
        return cls(**json.loads(data))

    def raw_payload(self) -> bytes | None:
        return base64.b64decode(self.payload_base64) if self.payload_base64 is not None else None


class DeadLetterPublisher:
    """Sends dead letters through a Kafka producer it is given (the pipeline's own, so no extra client).

    Failures are counted and logged with the letter, so none vanishes silently. With `keep_failed`, a letter
    whose delivery failed is kept and resent by `settle()`, which the writer calls before committing offsets
    past it: a refused record then always ends up on the dead-letter topic.
    """

    def __init__(
        self, producer: Producer, topic: str, *, keep_failed: bool = False, max_bytes: int = MAX_LETTER_BYTES
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.keep_failed = keep_failed
        self.max_bytes = max_bytes
        self.sent = self.delivered = self.failed = 0
        self._undelivered: list[DeadLetter] = []

    def publish(self, letter: DeadLetter, timeout: float = 5.0) -> bool:
        """Enqueue one dead letter; False when it could not even be enqueued within `timeout` (never raises)."""
        try:
            letter, value = letter.fitted(self.max_bytes)
        except (ValueError, TypeError) as exc:  # built by hand with data JSON cannot carry (use jsonable())
            log.error("kafka: dead letter %s not sent: not strict JSON: %s", letter.reason_code, exc)
            self.failed += 1
            return False
        key = text(letter.record_id or f"{letter.source_topic}/{letter.source_partition}/{letter.source_offset}")

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                self.delivered += 1
                return
            self._failed(letter, key, f"not delivered to {self.topic}: {err.str()}")

        deadline = time.monotonic() + timeout
        while True:
            try:
                self.producer.produce(self.topic, value, key[:_CLIP].encode(), on_delivery=delivered)
                break
            except BufferError:
                if time.monotonic() >= deadline:
                    self._failed(letter, key, f"not sent: the producer buffer stayed full for {timeout:.1f}s")
                    return False
                self.producer.poll(0.05)  # dead letters are rare; a short wait beats dropping one
            except (KafkaException, ValueError, TypeError) as exc:
                self._failed(letter, key, f"not sent: {exc}")
                return False
        self.sent += 1
        log.warning(
            "%s: refused %s %s: field %r %s [%s]; sent to %s",
            letter.stage, letter.kind, key[:_CLIP], letter.field, letter.reason[:_CLIP], letter.reason_code, self.topic,
        )  # fmt: skip
        return True

    def settle(self, timeout: float) -> bool:
        """Resend what failed, then wait for every letter; True when all are acknowledged by Kafka."""
        retry, self._undelivered = self._undelivered, []
        for letter in retry:
            self.publish(letter, timeout)
        return self.producer.flush(timeout) == 0 and not self._undelivered

    def _failed(self, letter: DeadLetter, key: str, what: str) -> None:
        self.failed += 1
        if self.keep_failed:
            self._undelivered.append(letter)
        log.error(
            "kafka: dead letter for record %s (%s) %s. Remedy: check Kafka; %s",
            key[:_CLIP], letter.reason_code, what,
            "it is resent before offsets move on" if self.keep_failed else f"the letter: {letter.to_json()[:4096]!r}",
        )  # fmt: skip
