"""The main job with the cgroup v1 path disabled: `k2 chaos run --cgroup v2|none` runs the pause and limit
scenarios with the other mechanisms (here: the v2 freezer, or SIGSTOP; a duty-cycled CPU cap; an rlimit
memory cap), every outcome is what it is with cgroup v1 (PASS), and the report names each mechanism.

Four scenarios per run keep CI short: Kafka (a Rust binary) paused, CPU-capped and memory-capped, and the
object store (a Go binary) paused. The full suites were run the same way by hand (see README).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests import host
from tests.integration.chaos.local_procs import mechanisms

from k2.chaos.outcome import Outcome

pytestmark = pytest.mark.integration

PAUSE_AND_LIMITS = "brief_kafka_outage or cpu_pressure or memory_pressure or brief_s3_outage"
# Their outcome with cgroup v1 (README: every shipped scenario passes on both backends).
EXPECTED = {
    "test_producer_survives_brief_kafka_outage": Outcome.PASS,
    "test_cpu_pressure_throttles_without_loss": Outcome.PASS,
    "test_memory_pressure_oom_behaviour": Outcome.PASS,
    "test_writer_buffers_through_brief_s3_outage": Outcome.PASS,
}


@pytest.mark.parametrize(
    ("policy", "freeze"),
    [pytest.param("none", "sigstop", id="none"), pytest.param("v2", "cgroup-v2", id="v2", marks=host.v2_freezer)],
)
def test_pause_and_limit_scenarios_pass_without_cgroup_v1(
    tmp_path: Path, stack_dir: Path, policy: str, freeze: str
) -> None:
    reports = tmp_path / "reports"
    done = subprocess.run(
        [sys.executable, "-m", "k2", "chaos", "run", f"--cgroup={policy}", "-k", PAUSE_AND_LIMITS,
         f"--data-dir={stack_dir}", f"--report-dir={reports}"],
        capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path,
    )  # fmt: skip
    output = (done.stdout + done.stderr)[-4000:]
    assert (reports / "report.json").exists(), output
    report = json.loads((reports / "report.json").read_text())
    outcomes = {s["name"]: s["outcome"] for s in report["scenarios"]}
    assert outcomes == EXPECTED and done.returncode == 0, output

    seen: dict[str, set[str]] = {}
    for scenario in report["scenarios"]:
        for fault in scenario["faults"]:
            for key, name in (mechanisms(fault["effect"]) | mechanisms(fault["restore_effect"])).items():
                seen.setdefault(key, set()).add(name)
    assert seen == {"freeze": {freeze}, "cpu": {"duty-cycle"}, "memory": {"rlimit"}}
    [cpu] = [f for s in report["scenarios"] for f in s["faults"] if f["restore_effect"].get("cpu_mechanism")]
    assert cpu["restore_effect"]["detail"]["cpu"]["within_tolerance"] is True
    assert cpu["restore_effect"]["throttled_periods"] > 0
