"""One seed replays the run: `k2 chaos run --seed N` twice on the real stack gives the same fault schedule in
report.json (what the seed decided: draws, faults, parameters, when in the workload), while what was measured
differs; and the HTML report says how to replay it."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from k2.chaos.seeds import Draws
from k2.stack import open_stack

pytestmark = pytest.mark.integration

SCENARIOS = "test_producer_survives_brief_kafka_outage or test_jitter_exercises_retry_backoff"


def chaos_run(data_dir: Path | None, reports: Path, *, keep: bool = False, parallel: int = 1) -> dict[str, Any]:
    where = [f"--data-dir={data_dir}"] if data_dir else []
    done = subprocess.run(
        [sys.executable, "-m", "k2", "chaos", "run", "--suite", "kafka", "--seed", "11", "-k", SCENARIOS,
         *where, f"--report-dir={reports}", f"--parallel={parallel}", *(["--keep"] if keep else [])],
        capture_output=True, text=True, timeout=600, check=False, cwd=reports.parent,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return json.loads((reports / "report.json").read_text())


def test_the_same_seed_replays_the_same_fault_schedule(stack_dir: Path) -> None:
    try:
        first = chaos_run(stack_dir, stack_dir.parent / "first", keep=True)  # the second run reuses the stack
        second = chaos_run(stack_dir, stack_dir.parent / "second", keep=False)
    finally:
        open_stack(stack_dir).down()
    assert first["fault_schedule"] == second["fault_schedule"]
    schedule = {s["scenario"].rsplit("::", 1)[-1]: s for s in first["fault_schedule"]["scenarios"]}
    assert set(schedule) == {"test_producer_survives_brief_kafka_outage", "test_jitter_exercises_retry_backoff"}

    outage = schedule["test_producer_survives_brief_kafka_outage"]
    draws = Draws(11, "faults:" + outage["scenario"])  # the decisions are the seed's, not the run's
    assert outage["decisions"] == {
        "baseline_trades": draws.randint("baseline_trades", 50, 150),
        "pause_s": draws.uniform("pause_s", 2.0, 4.0),
    }
    (pause,) = outage["faults"]
    assert (pause["kind"], pause["primitive"], pause["target"]) == ("service_failure", "pause", "kafka")
    assert pause["duration_s"] == outage["decisions"]["pause_s"]
    assert pause["after_invoked"] == outage["decisions"]["baseline_trades"]
    (latency,) = schedule["test_jitter_exercises_retry_backoff"]["faults"]
    jitter = schedule["test_jitter_exercises_retry_backoff"]["decisions"]
    assert latency["params"]["attributes"] == {"latency": jitter["latency_ms"], "jitter": jitter["jitter_ms"]}

    measured = [
        (f["injected_at"], f["effect"]) for run in (first, second) for s in run["scenarios"] for f in s["faults"]
    ]
    assert len(set(map(repr, measured))) == len(measured)  # the schedule holds decisions; measurements vary
    html = (stack_dir.parent / "first" / "report.html").read_text()
    assert "replays the same fault schedule" in html and "k2 chaos run --seed 11" in html


def test_the_seed_replays_the_same_schedule_when_the_run_is_split_over_two_stacks(stack_dir: Path) -> None:
    """`--parallel 2`: one scenario per fresh stack at once, one merged report, the same schedule as one stack."""
    tmp_path = stack_dir.parent
    whole = chaos_run(stack_dir, tmp_path / "whole")
    before = set(Path(tempfile.gettempdir()).glob("k2-chaos-*"))
    split = chaos_run(None, tmp_path / "split", parallel=2)
    assert set(Path(tempfile.gettempdir()).glob("k2-chaos-*")) <= before, "a shard left its temporary stack dir"
    assert split["fault_schedule"] == whole["fault_schedule"]
    assert [s["outcome"] for s in split["scenarios"]] == ["pass", "pass"]
    shards = [json.loads((tmp_path / "split" / "shards" / n / "report.json").read_text()) for n in ("1", "2")]
    assert sorted(len(shard["scenarios"]) for shard in shards) == [1, 1]  # each ran on its own stack
