"""Per-second counters of a running workload, fed as outcomes arrive and read by the probes and the report.

Why not read the ledger: the ledger keeps every operation for the checker; probes ask "what happened in the
last few seconds" once a second, which per-second buckets answer in constant time. Thread-safe: delivery
callbacks, the query thread and the sampler all touch it.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from k2.chaos.ledger import percentile

__all__ = ["Bucket", "Meter"]


@dataclass
class Bucket:
    """One second of the run (`second` counts from the run's start)."""

    second: int
    invoked: int = 0
    acked: int = 0
    failed: int = 0
    unknown: int = 0
    ack_latencies: list[float] = field(default_factory=list)
    queries_ok: int = 0
    queries_failed: int = 0
    query_latencies: list[float] = field(default_factory=list)

    def to_row(self) -> dict[str, float | int | None]:
        lat = sorted(self.ack_latencies)
        q = sorted(self.query_latencies)
        return {
            "second": self.second,
            "invoked": self.invoked,
            "acked": self.acked,
            "failed": self.failed,
            "unknown": self.unknown,
            "ack_p50_s": percentile(lat, 50),
            "ack_p99_s": percentile(lat, 99),
            "queries_ok": self.queries_ok,
            "queries_failed": self.queries_failed,
            "query_p99_s": percentile(q, 99),
        }


class Meter:
    """Counters per second since `start()`; `acked_offsets` keeps, per partition, acknowledged offsets not
    yet known to be committed by the writers (for the lag probe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[int, Bucket] = {}
        self.started: float | None = None
        self._pending: dict[int, deque[tuple[int, float]]] = defaultdict(deque)  # partition -> (offset, acked at)

    def start(self) -> None:
        self.started = self._clock()

    def elapsed(self) -> float:
        return 0.0 if self.started is None else self._clock() - self.started

    def _bucket(self) -> Bucket:
        if self.started is None:
            return Bucket(-1)  # before the run's clock starts: counted nowhere
        second = int(self.elapsed())
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = Bucket(second)
        return bucket

    # -- fed by the workload -------------------------------------------------------------------------

    def invoked(self) -> None:
        with self._lock:
            self._bucket().invoked += 1

    def acked(self, latency_s: float, partition: int | None, offset: int | None) -> None:
        with self._lock:
            bucket = self._bucket()
            bucket.acked += 1
            bucket.ack_latencies.append(latency_s)
            if partition is not None and offset is not None and offset >= 0:
                self._pending[partition].append((offset, self._clock()))

    def failed(self, unknown: bool = False) -> None:
        with self._lock:
            bucket = self._bucket()
            if unknown:
                bucket.unknown += 1
            else:
                bucket.failed += 1

    def query(self, ok: bool, latency_s: float) -> None:
        with self._lock:
            bucket = self._bucket()
            bucket.queries_ok += ok
            bucket.queries_failed += not ok
            bucket.query_latencies.append(latency_s)

    # -- read by probes and reports --------------------------------------------------------------------

    def window(self, seconds: float) -> list[Bucket]:
        """The complete seconds of the last `seconds` (the current, partial second excluded)."""
        with self._lock:
            now = int(self.elapsed())
            first = now - max(1, round(seconds))
            return [self._buckets.get(s) or Bucket(s) for s in range(max(0, first), now)]

    def rows(self) -> list[dict[str, float | int | None]]:
        with self._lock:
            last = max(self._buckets, default=-1)
            return [(self._buckets.get(s) or Bucket(s)).to_row() for s in range(last + 1)]

    def oldest_uncommitted(self, committed: dict[int, int]) -> float | None:
        """Seconds since the oldest acknowledged record past the writers' committed offsets was acked
        (0.0 when the writers have everything). Partitions missing from `committed` keep their records."""
        now = self._clock()
        oldest: float | None = None
        with self._lock:
            for partition, pending in self._pending.items():
                upto = committed.get(partition)
                while pending and upto is not None and pending[0][0] < upto:
                    pending.popleft()
                if pending:
                    oldest = pending[0][1] if oldest is None else min(oldest, pending[0][1])
        return 0.0 if oldest is None else max(0.0, now - oldest)
