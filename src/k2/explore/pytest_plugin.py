"""The `explore_pipeline` fixture: the exploration workload inside a pytest scenario (k2.explore.run).

    def test_writer_killed_while_s3_is_down(explore_pipeline):
        run = explore_pipeline(seed=7, duration_s=20)
        with run, ExitStack() as faults:
            run.until(5.0)
            faults.enter_context(service_failure("s3", duration_seconds=6, mode="stop"))
            run.until(20.0)
        assert run.verdict().outcome == "pass", run.verdict().reason

It runs on the run's stack and chaos session (`k2_stack`, `chaos_session`), so the faults a test enters are
journaled, restored and reported like any scenario's, and the run's ledger, check and hangs become the
scenario's: a regression test that loses data is reported as DATA_LOSS and one that blocks a caller as HANG,
not as a failed assertion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from k2.chaos.outcome import Outcome
from k2.chaos.pytest_plugin import RUN, ScenarioState
from k2.explore.run import ExploreRun
from k2.explore.schedule import Workload

__all__ = ["explore_pipeline"]


@pytest.fixture
def explore_pipeline(k2_stack: Any, chaos_session: Any, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """`explore_pipeline(seed=..., duration_s=..., **workload)` -> an ExploreRun to use with `with`."""
    from k2.explore.writers import default_writers

    state = request.config.stash[RUN].scenarios.setdefault(request.node.nodeid, ScenarioState())

    def judged(run: ExploreRun) -> None:
        """Before the scenario's body ends, so the chaos verdict sees what explore judged: the check (a
        DATA_LOSS is the check's), and a HANG as the scenario hanging, with the blocked caller's stacks."""
        verdict = run.judged
        state.ledger = run.pipeline.ledger
        if verdict is None:
            return
        if verdict.check is not None:
            state.checks.append(verdict.check)
        if verdict.outcome is Outcome.HANG:
            state.timed_out = True
            state.stack_dump = next((h.stacks for h in verdict.hangs if h.stacks), None) or verdict.reason

    def make(
        *,
        seed: int,
        duration_s: float,
        warmup_s: float = 3.0,
        abort_on: Iterable[str] = (),
        hang_after_s: float | None = None,
        drain_timeout_s: float = 60.0,
        **workload: Any,
    ) -> ExploreRun:
        if "planted" in workload:
            workload["planted"] = tuple(workload["planted"])
        run = ExploreRun(
            k2_stack,
            seed=seed,
            duration_s=duration_s,
            warmup_s=warmup_s,
            workload=Workload(**workload),
            abort_on=abort_on,
            hang_after_s=hang_after_s,
            drain_timeout_s=drain_timeout_s,
            session=chaos_session,
            writers=default_writers()[0],
            on_finish=judged,
        )
        return run

    yield make
