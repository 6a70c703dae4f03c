"""A watched run: the pipeline under load, probes once a second, the rules, and a verdict at the end.

    with ExploreRun(stack, seed=7, duration_s=60, abort_on=["lag>30s for 20s"]) as run:
        run.until(10.0)                                  # seconds since the run started
        with service_failure("writer-1", duration_seconds=5, mode="kill"):
            run.until(20.0)
        run.until(60.0)
    run.verdict().outcome                                # PASS, DATA_LOSS, HANG, ...

Faults are the caller's (the explorer injects a schedule's faults on time; a regression test writes them
out). The run owns the rest, which it guarantees on every exit path (end, exception, abort, Ctrl-C):
restore every fault of its session, recover the journal, bring the stack's services and the writers back,
stop the traffic (every record gets an outcome), and — unless interrupted — drain and check.

While it runs, a sampler thread measures every probe each second, baselines the throughput in the warm-up,
records violations of the steady state, stops the run when an abort rule has held for its duration
(`until` raises `Aborted`, which restores the faults on its way out) and notices a writer that died with no
fault on it; a second thread looks five times a second for a query blocked past `hang_after_s` (a HANG, with
every thread's stack while it is still blocked).
"""

from __future__ import annotations

import faulthandler
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from k2.explore.errors import ExploreError
from k2.explore.pipeline import DrainResult, Pipeline
from k2.explore.probes import Probe, Sample, standard_probes
from k2.explore.rules import STEADY_STATE, Watch, parse_rule
from k2.explore.schedule import Workload
from k2.explore.verdict import Hang, Verdict, judge

__all__ = ["Aborted", "ExploreRun", "Progress"]

log = logging.getLogger(__name__)
SAMPLE_S = 1.0
HANG_POLL_S = 0.2
GRACE_S = 10.0  # a writer may be down this long after a fault on it ended (its restart) before it counts


class Aborted(ExploreError):
    """An abort rule held for its duration: the run stops, every fault is restored, and the report says why."""


@dataclass
class Progress:
    """What the live display shows, once a second."""

    elapsed_s: float
    duration_s: float
    active: list[str]
    values: dict[str, float | None]
    baseline: float | None
    violations: int
    events: list[str]


@dataclass
class Event:
    t: float
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"t": round(self.t, 3), "text": self.text}


@dataclass
class RunData:
    """Everything the report needs about one run, filled in as it goes."""

    run_id: str
    started_at: float = 0.0  # wall clock, the origin of every `t`
    finished_at: float = 0.0
    baseline: float | None = None
    samples: list[Sample] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    faults: list[Any] = field(default_factory=list)  # the session's fault records (as injected)
    drain: DrainResult | None = None
    series: list[dict[str, Any]] = field(default_factory=list)  # per-second traffic (k2.explore.meter)
    phases: dict[str, float] = field(default_factory=dict)  # seconds spent starting, healing, draining, ...
    status: str = "running"  # running | finished | aborted | interrupted


class ExploreRun:
    def __init__(
        self,
        stack: Any,
        *,
        seed: int,
        duration_s: float,
        warmup_s: float = 3.0,
        workload: Workload | None = None,
        abort_on: Iterable[str] = (),
        steady_state: Iterable[str] = STEADY_STATE,
        hang_after_s: float | None = None,
        drain_timeout_s: float = 60.0,
        session: Any = None,
        on_progress: Callable[[Progress], None] | None = None,
        writers: Any = None,
        on_finish: Callable[[ExploreRun], None] | None = None,
    ) -> None:
        self.stack, self.seed, self.duration_s, self.warmup_s = stack, seed, duration_s, warmup_s
        self.workload = workload or Workload()
        self.abort_watches = [Watch(parse_rule(r)) for r in abort_on]
        self.steady_watches = [Watch(parse_rule(r)) for r in steady_state]
        self.hang_after_s = hang_after_s if hang_after_s is not None else 3 * self.workload.query_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.on_progress, self.on_finish = on_progress, on_finish
        self.data = RunData(uuid.uuid4().hex[:10])
        self.pipeline = Pipeline(stack, self.workload, seed, self.data.run_id, writers=writers)
        self.probes: list[Probe] = standard_probes(self.pipeline.meter, self.pipeline.committed)
        self._session, self._own_session = session, session is None
        self._first_record = 0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._hang_watch: threading.Thread | None = None
        self._aborted: str | None = None
        self._hangs: list[Hang] = []
        self._crashes: list[str] = []
        self._dead_seen: set[str] = set()
        self._hung: set[float] = set()  # start times of queries already reported as hung
        self._verdict: Verdict | None = None

    # -- lifecycle --------------------------------------------------------------------------------------

    def __enter__(self) -> ExploreRun:
        if self._session is None:
            from k2.testing import chaos_session

            self._session = chaos_session(self.stack, seed=self.seed, recover=True).__enter__()
        self._first_record = len(self._session.records)
        try:
            with self._phase("start"):
                self.pipeline.start()
                self.pipeline.writers.declare(self._session)
        except BaseException:
            self._close_session(None)
            self.pipeline.close()
            raise
        self.data.started_at = time.time() - self.pipeline.meter.elapsed()
        for probe in self.probes:
            getattr(probe, "start", lambda: None)()
        self._sampler = threading.Thread(target=self._sample_loop, name="explore-sampler", daemon=True)
        self._sampler.start()
        self._hang_watch = threading.Thread(target=self._watch_hangs, name="explore-hangs", daemon=True)
        self._hang_watch.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        interrupted = exc_type is not None and not issubclass(exc_type, Exception)
        self.data.status = "interrupted" if interrupted else ("aborted" if self._aborted else "finished")
        self._stop.set()
        for probe in self.probes:
            getattr(probe, "stop", lambda: None)()
        for thread in (self._sampler, self._hang_watch):
            if thread is not None:
                thread.join(10.0)
        try:
            with self._phase("heal"):
                self._heal()
            with self._phase("stop_traffic"):
                self.pipeline.stop_traffic()
            self.data.series = self.pipeline.meter.rows()
            self.data.faults = list(self._session.records[self._first_record :])
            if not interrupted:
                self._finish(exc)
        finally:
            self.data.finished_at = time.time()
            with self._phase("close"):
                self.pipeline.close()
                self._close_session(exc)

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.data.phases[name] = round(time.monotonic() - began, 3)

    def _close_session(self, exc: BaseException | None) -> None:
        if self._own_session and self._session is not None:
            self._session.__exit__(type(exc) if exc else None, exc, None)

    def _heal(self) -> None:
        """Every fault restored, the journal settled, every service and writer running again."""
        self._session.halt()
        journal = self._session.require_journal()
        if journal.pending():
            journal.recover()
        self.stack.up()
        for name in self.pipeline.heal_writers():
            self.note(f"{name} started again for the drain")

    def _finish(self, exc: BaseException | None) -> None:
        for name in self.pipeline.writers.dead():
            self._crashes.append(f"{name} is not running after the heal")
        if exc is not None and not isinstance(exc, Aborted):
            self._crashes.append(f"the run's own code failed: {type(exc).__name__}: {exc}")
        with self._phase("drain_and_check"):
            self.data.drain = drain = self.pipeline.check(self.drain_timeout_s)
        for watch in (*self.steady_watches, *self.abort_watches):
            watch.close(self.elapsed())
        self._verdict = judge(
            drain.check,
            caught_up=drain.caught_up,
            kafka_source=self.pipeline.kafka_source,
            hangs=self._hangs,
            crashes=[*self._crashes, *self.pipeline.errors],
            aborted=self._aborted,
            topic=drain.positions,
        )
        if self.on_finish is not None:
            self.on_finish(self)

    # -- what the caller uses ---------------------------------------------------------------------------

    @property
    def session(self) -> Any:
        return self._session

    def elapsed(self) -> float:
        return self.pipeline.meter.elapsed()

    def until(self, t: float) -> None:
        """Wait until `t` seconds into the run; raises Aborted as soon as an abort rule has fired."""
        while True:
            if self._aborted:
                raise Aborted(f"aborted at +{self.elapsed():.1f}s: {self._aborted}")
            left = t - self.elapsed()
            if left <= 0:
                return
            self._stop.wait(min(left, 0.1))

    def note(self, text: str) -> None:
        self.data.events.append(Event(self.elapsed(), text))
        log.info("explore +%.1fs: %s", self.elapsed(), text)

    @property
    def judged(self) -> Verdict | None:
        """The verdict, or None before the end (or after an interruption)."""
        return self._verdict

    def verdict(self) -> Verdict:
        if self._verdict is None:
            raise ExploreError("the run has no verdict: it is still running, or it was interrupted")
        return self._verdict

    @property
    def violations(self) -> list[Any]:
        return [v for w in self.steady_watches for v in w.violations]

    # -- the sampler ----------------------------------------------------------------------------------

    def _sample_loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            try:
                self._sample()
            except Exception:  # the sampler must outlive anything one sample trips on
                log.exception("explore: a sample failed")

    def _sample(self) -> None:
        t = self.elapsed()
        values = {p.name: p.measure() for p in self.probes}
        self.data.samples.append(Sample(t, values))
        if self.data.baseline is None and t >= self.warmup_s:
            warm = self.pipeline.meter.rows()[1 : max(2, int(self.warmup_s))]
            self.data.baseline = sum(int(r["acked"] or 0) for r in warm) / max(1, len(warm))
            self.note(f"baseline throughput {self.data.baseline:.0f}/s")
        baseline = self.data.baseline
        for watch in self.steady_watches:
            watch.observe(t, values.get(watch.rule.probe), baseline)
        # Abort rules are watched from the end of the warm-up: a pipeline still starting (writers joining the
        # group, a loaded machine) is no steady state to halt on, and no fault has started yet.
        for watch in self.abort_watches if t >= self.warmup_s else ():
            if watch.observe(t, values.get(watch.rule.probe), baseline) and not self._aborted:
                self._aborted = f"{watch.rule.text} held (worst {watch.violations[-1].worst})"
                self.note(f"ABORT: {self._aborted}")
        self._watch_writers(t)
        if self.on_progress is not None:
            active = [f"{r.kind} {r.target}" for r in self._records() if r.restored_at is None]
            self.on_progress(
                Progress(
                    t,
                    self.duration_s,
                    active,
                    values,
                    baseline,
                    sum(len(w.violations) for w in self.steady_watches),
                    [e.text for e in self.data.events[-3:]],
                )
            )

    def _watch_hangs(self) -> None:
        """Every HANG_POLL_S: a query in flight past `hang_after_s` (with every thread's stack), or one that
        came back having taken that long (the caller was blocked all that time, even if it answered)."""
        while not self._stop.wait(HANG_POLL_S):
            in_flight, last = self.pipeline.query_in_flight, self.pipeline.last_query
            if in_flight is not None and time.monotonic() - in_flight[0] >= self.hang_after_s:
                self._hang(in_flight[0], in_flight[1], time.monotonic() - in_flight[0], running=True)
            if last is not None and last[2] >= self.hang_after_s:
                self._hang(last[0], last[1], last[2], running=False)

    def _hang(self, began: float, symbol: str, seconds: float, *, running: bool) -> None:
        if began in self._hung:
            return
        self._hung.add(began)
        stacks = None
        if running:
            with tempfile.TemporaryFile("w+") as dump:
                faulthandler.dump_traceback(dump, all_threads=True)
                dump.seek(0)
                stacks = dump.read()
        state = "has been running" if running else "took"
        detail = (
            f"a query (VWAP of {symbol}) {state} {seconds:.1f}s, past its "
            f"{self.workload.query_timeout_s:g}s deadline: the caller was blocked"
        )
        self._hangs.append(Hang("query", self.elapsed(), detail, stacks))
        self.note(f"HANG: {detail}")

    def _records(self) -> list[Any]:
        """The session's records of this run's faults (as injected; restored_at None while active)."""
        return [r for r in self._session.records[self._first_record :] if r.injected_at is not None]

    def _watch_writers(self, t: float) -> None:
        """A writer that is down with no fault on it now or in the last GRACE_S seconds died on its own."""
        now = time.time()
        for name in self.pipeline.writers.dead():
            if name in self._dead_seen:
                continue
            covered = [
                r
                for r in self._records()
                if r.target == name and (r.restored_at is None or now - r.restored_at < GRACE_S)
            ]
            if covered:
                continue
            self._dead_seen.add(name)
            self._crashes.append(f"{name} died with no fault on it (at +{t:.1f}s)")
            self.note(f"CRASH: {name} is not running and no fault acts on it")
