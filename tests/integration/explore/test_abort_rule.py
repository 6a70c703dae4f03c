"""`--abort-on`: a steady-state rule that holds for its duration halts the run long before its planned end,
restores the fault that caused it at once (not at its planned end), and the verdict says why; with nothing lost
that is FAILED_GRACEFULLY (the stop conditions of Gremlin and AWS FIS, on the real pipeline)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from k2.chaos.outcome import Outcome
from k2.explore.explorer import explore
from k2.explore.planned import PlannedFault
from k2.explore.schedule import Schedule, Workload
from k2.explore.writers import default_writers
from k2.stack import LocalStack
from tests.integration.platform.pipeline_helpers import running_stack

pytestmark = pytest.mark.integration

RULE = "lag>5s for 3s"  # well clear of the start-up lag the warm-up absorbs


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack() as running:
        yield running


def test_an_abort_rule_halts_the_run_and_restores_the_fault_at_once(stack: LocalStack, tmp_path: Path) -> None:
    # The catalog cut off for 50 s of a 60 s run: the writers cannot commit, so lag grows past 5 s within
    # seconds of the cut; without the rule the cut would last until +55 s.
    cut = PlannedFault(0, "network_partition", "postgres", at_s=5.0, duration_s=50.0,
                       params={"mode": "refuse", "direction": "both", "clients": None})  # fmt: skip
    schedule = Schedule(seed=1, duration_s=60.0, faults=(cut,), warmup_s=5.0, workload=Workload(query_timeout_s=1.5))
    result = explore(
        stack, schedule, abort_on=[RULE], report_dir=tmp_path, writers=default_writers()[0], drain_timeout_s=30.0
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "aborted", report["run"]["events"]
    assert result.verdict is not None and result.verdict.outcome is Outcome.FAILED_GRACEFULLY, (
        result.verdict and result.verdict.reason[:2000]
    )
    assert result.verdict.aborted is not None and result.verdict.aborted.startswith(RULE), result.verdict.aborted
    [record] = report["run"]["faults"]
    assert record["status"] == "injected" and record["restored_s"] is not None, record
    aborts = [e["t"] for e in report["run"]["events"] if e["text"].startswith(f"ABORT: {RULE}")]
    assert aborts and aborts[0] > record["injected_s"], ("held with the cut in place", report["run"]["events"])
    # restored as soon as the rule held (seconds after the cut), not at its planned end (+55 s)
    assert record["restored_s"] < aborts[0] + 10 < cut.end_s - 20, (record["restored_s"], report["run"]["events"])
