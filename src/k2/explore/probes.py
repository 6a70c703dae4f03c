"""Steady-state probes: what "the pipeline is healthy" means, measured once a second while faults come and go.

Each probe turns the recent past into one number (or None when it cannot be measured right now, e.g. the
broker does not answer the lag probe's question):

- `throughput`: acknowledged records a second over the last `window_s` (rules may say `<50%` of the warm-up
  baseline or an absolute `<100/s`);
- `p99`: the 99th percentile of invoke-to-ack latency over the window, seconds;
- `lag`: how long the oldest acknowledged record the writers have not committed has been waiting, seconds;
- `query_success`: the share of queries that answered, percent, over a longer window;
- `query_p99`: the 99th percentile of query latency, seconds.

A probe is any object with `name`, `unit` and `measure()`; `Sampler` calls them all, keeps the timeline and
feeds the rules (k2.explore.rules).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from k2.chaos.ledger import percentile
from k2.explore.meter import Meter

__all__ = [
    "AckLatencyProbe",
    "LagProbe",
    "Probe",
    "QueryLatencyProbe",
    "QuerySuccessProbe",
    "Sample",
    "ThroughputProbe",
    "standard_probes",
]

log = logging.getLogger(__name__)


class Probe(Protocol):
    name: str
    unit: str  # "/s", "s" or "%": what a rule's number is compared in

    def measure(self) -> float | None: ...


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the run started
    values: dict[str, float | None]

    def to_dict(self) -> dict[str, object]:
        return {"t": round(self.t, 3), **{k: None if v is None else round(v, 4) for k, v in self.values.items()}}


class ThroughputProbe:
    name, unit = "throughput", "/s"

    def __init__(self, meter: Meter, window_s: float = 2.0) -> None:
        self.meter, self.window_s = meter, window_s

    def measure(self) -> float | None:
        buckets = self.meter.window(self.window_s)
        return sum(b.acked for b in buckets) / len(buckets) if buckets else None


class AckLatencyProbe:
    name, unit = "p99", "s"

    def __init__(self, meter: Meter, window_s: float = 5.0) -> None:
        self.meter, self.window_s = meter, window_s

    def measure(self) -> float | None:
        latencies = sorted(x for b in self.meter.window(self.window_s) for x in b.ack_latencies)
        return percentile(latencies, 99)


class LagProbe:
    """`committed()` reads the writer group's committed offset per partition (None when the broker does not
    answer: the lag is then unknown, not zero). The broker may take seconds to answer during a fault, so the
    offsets are fetched by a thread of the probe's own and `measure()` never waits: it uses the latest answer
    not older than `fresh_s`."""

    name, unit = "lag", "s"

    def __init__(
        self,
        meter: Meter,
        committed: Callable[[], dict[int, int] | None],
        *,
        fresh_s: float = 3.0,
        every_s: float = 1.0,
    ) -> None:
        self.meter, self.committed, self.fresh_s, self.every_s = meter, committed, fresh_s, every_s
        self._latest: tuple[float, dict[int, int]] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, name="explore-lag-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.every_s)

    def refresh(self) -> None:
        try:
            offsets = self.committed()
        except Exception as exc:  # a probe never breaks the run; unknown is recorded as such
            log.debug("lag probe: %s", exc)
            return
        if offsets is not None:
            self._latest = (time.monotonic(), offsets)

    def measure(self) -> float | None:
        if self._thread is None:
            self.refresh()  # not started: measure in the caller's thread
        latest = self._latest
        if latest is None or time.monotonic() - latest[0] > self.fresh_s:
            return None
        return self.meter.oldest_uncommitted(latest[1])


class QuerySuccessProbe:
    name, unit = "query_success", "%"

    def __init__(self, meter: Meter, window_s: float = 10.0) -> None:
        self.meter, self.window_s = meter, window_s

    def measure(self) -> float | None:
        buckets = self.meter.window(self.window_s)
        ok, failed = sum(b.queries_ok for b in buckets), sum(b.queries_failed for b in buckets)
        return None if ok + failed == 0 else 100.0 * ok / (ok + failed)


class QueryLatencyProbe:
    name, unit = "query_p99", "s"

    def __init__(self, meter: Meter, window_s: float = 10.0) -> None:
        self.meter, self.window_s = meter, window_s

    def measure(self) -> float | None:
        return percentile(sorted(x for b in self.meter.window(self.window_s) for x in b.query_latencies), 99)


def standard_probes(meter: Meter, committed: Callable[[], dict[int, int] | None]) -> list[Probe]:
    """The five probes above over one meter."""
    return [
        ThroughputProbe(meter),
        AckLatencyProbe(meter),
        LagProbe(meter, committed),
        QuerySuccessProbe(meter),
        QueryLatencyProbe(meter),
    ]


def names(probes: Iterable[Probe]) -> list[str]:
    return [p.name for p in probes]
