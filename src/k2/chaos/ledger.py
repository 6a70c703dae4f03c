"""The ledger: every operation a scenario's clients performed, and what became of it.

A chaos test can only claim "nothing acknowledged was lost" if it knows exactly what was acknowledged.
Clients record each operation when they start it (`invoke`) and when its outcome is known (`ack`, `fail`,
`unknown`); the checker later compares that against what independent readers find in the sinks.

    ledger = Ledger()
    ledger.invoke("T-1", group="AAPL", seq=1)
    ledger.ack("T-1", partition=0, offset=41)

A producer's delivery observer can be plugged straight in: `observer=ledger.observe` (or `ledger.record`).
Times are wall clock (epoch seconds), the same clock as FaultRecord, so faults and operations share a timeline.
Thread-safe: delivery callbacks may run on any thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import Enum, StrEnum
from typing import Any

from k2.chaos.errors import ChaosError

__all__ = ["Ledger", "LedgerError", "Op", "OpState", "percentile"]

log = logging.getLogger(__name__)


class LedgerError(ChaosError, ValueError):
    """A ledger call that cannot be recorded truthfully (unknown key, event without a key, bad status)."""


class OpState(StrEnum):
    INVOKED = "invoked"  # started, outcome not known yet
    ACKED = "acknowledged"  # the system said it is durable
    FAILED = "failed"  # the system said it is certainly not written
    UNKNOWN = "unknown"  # may or may not be written (timeout, closed with it in flight)


@dataclass(slots=True)
class Op:
    """One operation: a record with a unique key, in an ordering group, at a per-group sequence number."""

    key: str
    group: str | None
    seq: int | None
    invoked_at: float
    payload_digest: str | None = None
    state: OpState = OpState.INVOKED
    completed_at: float | None = None
    partition: int | None = None
    offset: int | None = None
    error: str | None = None
    attempts: int = 1
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def latency_s(self) -> float | None:
        """Invoke to acknowledgement; None unless acknowledged."""
        if self.state is not OpState.ACKED or self.completed_at is None:
            return None
        return max(0.0, self.completed_at - self.invoked_at)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data


# Statuses an observed event may carry, mapped to ledger states (liberal: several spellings).
_STATUS = {
    "acknowledged": OpState.ACKED,
    "acked": OpState.ACKED,
    "ack": OpState.ACKED,
    "delivered": OpState.ACKED,
    "success": OpState.ACKED,
    "ok": OpState.ACKED,
    "failed": OpState.FAILED,
    "fail": OpState.FAILED,
    "error": OpState.FAILED,
    "rejected": OpState.FAILED,  # invalid, dead-lettered: never in the data sink
    "unknown": OpState.UNKNOWN,
    "info": OpState.UNKNOWN,
    "indeterminate": OpState.UNKNOWN,
    "timeout": OpState.UNKNOWN,
    "timed_out": OpState.UNKNOWN,
}


def _attr(event: Any, *names: str) -> Any:
    """The first of `names` the event has (attribute or mapping key) that is not None."""
    for name in names:
        value = event.get(name) if isinstance(event, Mapping) else getattr(event, name, None)
        if value is not None:
            return value
    return None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100) of already sorted values; None when empty."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    rank = (len(values) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return values[low] + (values[high] - values[low]) * (rank - low)


class Ledger:
    """Thread-safe record of operations; see the module docstring."""

    def __init__(self, name: str = "", *, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._ops: dict[str, Op] = {}
        self.anomalies: list[str] = []  # contradictory reports (ack after fail, two offsets for one key, ...)
        self.unkeyed_failures = 0  # failed/rejected events that never had a key (e.g. unserialisable input)

    # -- recording -----------------------------------------------------------------------------

    def invoke(
        self, key: str, *, group: str | None, seq: int | None, payload_digest: str | None = None, t: float | None = None
    ) -> Op:
        """Record that an operation started. Re-invoking a failed/unknown key is a retry; otherwise an error."""
        now = self._clock() if t is None else t
        with self._lock:
            op = self._ops.get(key)
            if op is None:
                op = self._ops[key] = Op(str(key), group, seq, now, payload_digest)
            elif op.state in (OpState.FAILED, OpState.UNKNOWN):
                op.attempts += 1
                op.meta.setdefault("earlier", []).append({"state": op.state.value, "error": op.error})
                op.state, op.invoked_at, op.completed_at, op.error = OpState.INVOKED, now, None, None
                op.group, op.seq = group, seq
                op.payload_digest = payload_digest or op.payload_digest
            else:
                raise LedgerError(
                    f"ledger {self.name!r}: key {key!r} was invoked twice while {op.state.value}; keys must be "
                    "unique per operation (retry only after fail/unknown)"
                )
            return replace(op)

    def ack(self, key: str, *, partition: int | None = None, offset: int | None = None, t: float | None = None) -> Op:
        """Record that the system acknowledged the operation (durable at partition/offset)."""
        return self._complete(key, OpState.ACKED, None, t, partition=partition, offset=offset)

    def fail(self, key: str, error: str | BaseException, t: float | None = None) -> Op:
        """Record that the operation certainly did not take effect."""
        return self._complete(key, OpState.FAILED, str(error), t)

    def unknown(self, key: str, reason: str | BaseException, t: float | None = None) -> Op:
        """Record that the outcome cannot be known (flush timed out, producer closed with it in flight)."""
        return self._complete(key, OpState.UNKNOWN, str(reason), t)

    def _complete(
        self,
        key: str,
        state: OpState,
        error: str | None,
        t: float | None,
        *,
        partition: int | None = None,
        offset: int | None = None,
    ) -> Op:
        now = self._clock() if t is None else t
        with self._lock:
            op = self._ops.get(key)
            if op is None:
                raise LedgerError(
                    f"ledger {self.name!r}: {state.value} reported for {key!r}, which was never invoked; call "
                    "invoke() first (or use observe(), which records the invocation itself)"
                )
            self._transition(op, state, error, now, partition, offset)
            return replace(op)

    def _transition(
        self, op: Op, state: OpState, error: str | None, now: float, partition: int | None, offset: int | None
    ) -> None:
        """Apply an outcome, keeping contradictions visible instead of silently overwriting them."""
        if op.state is OpState.ACKED:
            if state is OpState.ACKED and (partition, offset) == (op.partition, op.offset):
                return  # a repeated report of the same thing
            self._anomaly(f"{op.key}: {state.value} reported after acknowledged at {op.partition}/{op.offset}")
            if state is not OpState.ACKED:
                return  # an acknowledgement is never taken back: the checker decides what really happened
        elif op.state is OpState.FAILED and state is OpState.ACKED:
            self._anomaly(f"{op.key}: acknowledged after failing ({op.error})")
        op.state, op.completed_at, op.error = state, now, error
        if state is OpState.ACKED:
            op.partition, op.offset = partition, offset

    def _anomaly(self, text: str) -> None:
        log.warning("ledger %s: %s", self.name or "-", text)
        self.anomalies.append(text)

    def observe(self, event: Any) -> Op | None:
        """Record a delivery event from any object with the usual attributes (or a mapping).

        Key: record_id/key/id; group: symbol/group; seq: sequence_number/seq; status: acknowledged, failed,
        rejected (as failed) or unknown; partition, offset, error; enqueued_at/completed_at when present.
        An event for a key never invoked records the invocation too (at enqueued_at, else now).
        """
        raw_status = _attr(event, "status", "state", "outcome")
        if isinstance(raw_status, Enum):
            raw_status = raw_status.value
        status = _STATUS.get(str(raw_status).strip().lower()) if raw_status is not None else None
        if status is None:
            raise LedgerError(
                f"ledger {self.name!r}: event {event!r} has status {raw_status!r}; expected one of "
                f"{sorted({s.value for s in OpState} - {'invoked'})} (or a known synonym)"
            )
        key = _attr(event, "record_id", "key", "id", "trade_id", "quote_id")
        if key is None:
            if status is OpState.FAILED:  # nothing to track: it never had an identity, so it cannot be lost
                with self._lock:
                    self.unkeyed_failures += 1
                log.info("ledger %s: counted a failed event without a key: %r", self.name or "-", event)
                return None
            raise LedgerError(
                f"ledger {self.name!r}: event {event!r} has no key (looked for record_id, key, id); the ledger "
                "needs each record's unique id to prove it was not lost"
            )
        key = str(key)
        completed = _attr(event, "completed_at", "t", "timestamp") or None
        now = self._clock() if completed is None else float(completed)
        error = _attr(event, "error", "reason", "reason_code")
        if status is OpState.FAILED and str(raw_status).lower() == "rejected":
            error = f"rejected: {error}" if error else "rejected"
        partition, offset = _attr(event, "partition"), _attr(event, "offset")
        invoked = _attr(event, "enqueued_at", "invoked_at") or None
        with self._lock:
            op = self._ops.get(key)
            if op is None:
                group, seq = _attr(event, "symbol", "group"), _attr(event, "sequence_number", "seq", "sequence")
                op = self._ops[key] = Op(key, group, seq, float(invoked) if invoked else now)
                op.payload_digest = _attr(event, "payload_digest", "digest")
            elif op.state in (OpState.FAILED, OpState.UNKNOWN):  # one event per send: this is a new attempt
                op.attempts += 1
                op.meta.setdefault("earlier", []).append({"state": op.state.value, "error": op.error})
                op.state = OpState.INVOKED
                op.invoked_at = float(invoked) if invoked else op.invoked_at
            for extra in ("topic", "kind", "reason_code"):
                value = _attr(event, extra)
                if value is not None:
                    op.meta[extra] = value
            outcome_error = None if status is OpState.ACKED else str(error or status.value)
            self._transition(op, status, outcome_error, now, partition, offset)
            return replace(op)

    record = observe  # the name the producer's docs use: `observer=ledger.record`
    __call__ = observe

    # -- reading -------------------------------------------------------------------------------

    def get(self, key: str) -> Op | None:
        with self._lock:
            op = self._ops.get(key)
            return replace(op) if op is not None else None

    def ops(self) -> list[Op]:
        """A consistent copy of every operation, in invocation order."""
        with self._lock:
            return [replace(op) for op in self._ops.values()]

    def keys(self, state: OpState | None = None) -> list[str]:
        with self._lock:
            return [k for k, op in self._ops.items() if state is None or op.state is state]

    def acked_keys(self) -> list[str]:
        return self.keys(OpState.ACKED)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._ops

    def counts(self) -> dict[str, int]:
        """Operations by current state, plus the total."""
        with self._lock:
            counter = Counter(op.state.value for op in self._ops.values())
            total = len(self._ops)
        counts = {"invoked": total, "pending": counter.get(OpState.INVOKED.value, 0)}
        counts.update({s.value: counter.get(s.value, 0) for s in OpState if s is not OpState.INVOKED})
        return counts

    def ack_times(self) -> list[float]:
        """Wall-clock times of every acknowledgement, sorted (for recovery time)."""
        with self._lock:
            times = [op.completed_at for op in self._ops.values() if op.state is OpState.ACKED and op.completed_at]
        return sorted(times)

    def series(self) -> list[dict[str, Any]]:
        """Per wall-clock second: invoked, acked, failed, unknown counts and ack latency percentiles (seconds).

        Seconds without activity between the first and last are included with zeros so charts stay continuous.
        """
        return time_series(self.ops())

    def snapshot(self, *, include_ops: bool = False) -> dict[str, Any]:
        """Everything a report needs, as JSON-able data."""
        ops = self.ops()
        data: dict[str, Any] = {
            "name": self.name,
            "counts": self.counts(),
            "anomalies": list(self.anomalies),
            "unkeyed_failures": self.unkeyed_failures,
            "series": time_series(ops),
        }
        if include_ops:
            data["ops"] = [op.to_dict() for op in ops]
        return data


def time_series(ops: Iterable[Op]) -> list[dict[str, Any]]:
    """Bucket operations per wall-clock second (see Ledger.series)."""
    invoked: Counter[int] = Counter()
    done: dict[OpState, Counter[int]] = defaultdict(Counter)
    latencies: dict[int, list[float]] = defaultdict(list)
    for op in ops:
        invoked[int(op.invoked_at)] += 1
        if op.completed_at is not None and op.state is not OpState.INVOKED:
            second = int(op.completed_at)
            done[op.state][second] += 1
            if op.latency_s is not None:
                latencies[second].append(op.latency_s)
    seconds = set(invoked) | {s for c in done.values() for s in c}
    if not seconds:
        return []
    rows = []
    for second in range(min(seconds), max(seconds) + 1):
        lat = sorted(latencies.get(second, ()))
        rows.append(
            {
                "t": second,
                "invoked": invoked.get(second, 0),
                "acked": done[OpState.ACKED].get(second, 0),
                "failed": done[OpState.FAILED].get(second, 0),
                "unknown": done[OpState.UNKNOWN].get(second, 0),
                "ack_p50_s": percentile(lat, 50),
                "ack_p95_s": percentile(lat, 95),
                "ack_p99_s": percentile(lat, 99),
                "ack_max_s": lat[-1] if lat else None,
            }
        )
    return rows
