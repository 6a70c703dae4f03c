"""Run one schedule: the report is written before anything starts, each fault is injected at its second
through the public fault API (a thread per injection), and the report is written again with the verdict.

    result = explore(stack, schedule, report_dir=Path("explore-reports"), abort_on=["lag>30s for 20s"])
    result.verdict.outcome

A fault that cannot be injected (the service is down because of another fault, the backend cannot do it) is
noted on the timeline and the run goes on; the report says which planned faults really ran.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k2.chaos.errors import ChaosError
from k2.explore.planned import PlannedFault
from k2.explore.report import report_dict, write_report
from k2.explore.run import Aborted, ExploreRun, Progress, RunData
from k2.explore.schedule import Schedule
from k2.explore.verdict import Verdict

__all__ = ["ExploreResult", "explore"]

log = logging.getLogger(__name__)
INJECT_TIMEOUT_S = 120.0


@dataclass
class ExploreResult:
    schedule: Schedule
    data: RunData
    verdict: Verdict | None  # None when the run was interrupted
    violations: list[Any] = field(default_factory=list)
    injected: dict[int, str] = field(default_factory=dict)  # planned index -> "injected" or why not
    report: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def signature(self) -> str:
        return self.verdict.signature if self.verdict is not None else "interrupted"


class _Injector:
    """Injects each planned fault at its second from a thread of its own, so one slow injection (a container
    that takes seconds to stop) never delays the next; each fault ends on its own timer."""

    def __init__(self, run: ExploreRun, result: ExploreResult) -> None:
        self.run, self.result = run, result
        self.records: dict[int, Any] = {}
        self._entered: list[Any] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, fault: PlannedFault) -> None:
        thread = threading.Thread(target=self._inject, args=(fault,), name=f"explore-fault-{fault.index}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _inject(self, fault: PlannedFault) -> None:
        try:
            built = fault.build(self.run.session)
            built.__enter__()
        except Exception as exc:  # a typed ChaosError mostly; anything else is reported the same way, not lost
            exc_text = str(exc) if isinstance(exc, ChaosError) else f"{type(exc).__name__}: {exc}"
            self.result.injected[fault.index] = f"not injected: {exc_text}"
            self.run.note(f"fault #{fault.index} not injected: {exc_text}")
            return
        with self._lock:
            self._entered.append(built)
            self.records[fault.index] = built.record
        self.result.injected[fault.index] = "injected"
        self.run.note(f"injected {fault.describe()}")

    def finish(self, stopped: BaseException | None) -> None:
        """Wait for the injections under way (bounded), then end every injected fault (each restores once).
        A run that ended on time lets each fault last its duration; one `stopped` early (an abort rule, Ctrl-C,
        a failure) hands the exception to each fault's exit, which restores it at once instead of waiting."""
        for thread in self._threads:
            thread.join(INJECT_TIMEOUT_S)
        with self._lock:
            entered = list(reversed(self._entered))
        for built in entered:
            try:
                built.__exit__(type(stopped) if stopped else None, stopped, None)
            except Exception as exc:  # the run's heal restores it through the session and the journal
                log.error("restoring %r failed: %s", built, exc)


def explore(
    stack: Any,
    schedule: Schedule,
    *,
    abort_on: Iterable[str] = (),
    report_dir: Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    hang_after_s: float | None = None,
    drain_timeout_s: float = 60.0,
    context: dict[str, Any] | None = None,
    writers: Any = None,
    session: Any = None,
) -> ExploreResult:
    """Run `schedule` on `stack` (see the module docstring). `context`: what the report says about how the
    run was started (command, backend, versions); `session`: an open chaos session to use (default: one of
    its own, opened and closed by the run)."""
    rules = list(abort_on)
    context = dict(context or {})
    paths: dict[str, Path] = {}
    if report_dir is not None:
        paths = write_report(report_dir, report_dict(schedule, None, status="scheduled", context=context))
    run = ExploreRun(
        stack,
        seed=schedule.seed,
        duration_s=schedule.duration_s,
        warmup_s=schedule.warmup_s,
        workload=schedule.workload,
        abort_on=rules,
        hang_after_s=hang_after_s,
        drain_timeout_s=drain_timeout_s,
        on_progress=on_progress,
        writers=writers,
        session=session,
    )
    result = ExploreResult(schedule, run.data, None)
    injector = _Injector(run, result)
    try:
        with run:
            try:
                for fault in schedule.faults:
                    run.until(fault.at_s)
                    injector.start(fault)
                run.until(schedule.duration_s)
            except BaseException as stopped:
                injector.finish(stopped)
                raise
            injector.finish(None)
    except Aborted as exc:
        log.warning("%s", exc)
    finally:
        result.verdict = run.judged
        result.violations = run.violations
        result.report = report_dict(schedule, result, status=run.data.status, context=context, planned=injector.records)
        if report_dir is not None:
            paths = write_report(report_dir, result.report)
        result.paths = paths
    return result
