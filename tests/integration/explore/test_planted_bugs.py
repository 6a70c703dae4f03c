"""`k2 chaos explore` finds each planted bug with a fixed seed in a short run, with the bug's outcome class;
`k2 chaos shrink` reduces the schedule to at most 2 faults and writes a regression test; the same seeds with
no bug planted PASS (no false alarm). One stack for the module; the seeds were chosen once from `--dry-run`
schedules of 12 s (the whole fault catalogue, intensity high) whose faults include the bug's trigger.

The query bug goes through the command line end to end (explore, shrink, then the written regression test
run by pytest, which must fail while the bug is planted); the other two through the library API the CLI uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k2.chaos.outcome import Outcome
from k2.explore.explorer import explore
from k2.explore.inventory import stack_inventory
from k2.explore.nemesis import Nemesis
from k2.explore.regression import call, regression_test
from k2.explore.schedule import Schedule, Workload
from k2.explore.shrink import Budget, shrink
from k2.explore.writers import default_writers
from k2.platform.planted import BUGS, CONTEXT_ENV, ENV
from k2.stack import LocalStack
from k2.testing import chaos_session
from tests.integration.platform.pipeline_helpers import running_stack

pytestmark = pytest.mark.integration

DURATION_S, WARMUP_S, QUERY_TIMEOUT_S = 12.0, 3.0, 1.5  # a query blocked 4.5 s (3 x its timeout) is a HANG
CASES = {  # planted bug -> (seed, the outcome it must give)
    "writer-commits-before-iceberg": (414, "data_loss:lost"),  # 3 faults; #0 cuts PostgreSQL off for 6 s
    "producer-retries-without-idempotence": (291, "data_loss:duplicated"),  # 3 faults; #0 holds Kafka's replies 4.1 s
    "query-without-timeout": (118, "hang:query"),  # 3 faults; #0 freezes PostgreSQL for 5.8 s
}
# No fault, then the first half (two faults, the trigger among them): enough for "at most 2" in CI's time; the
# benchmark (benchmarks/bench_explore.py) shrinks with the default budget, down to one fault.
SHRINK_RUNS = 2


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack() as running:
        yield running


@pytest.fixture
def session(stack: LocalStack) -> Iterator[Any]:
    """One chaos session (one watchdog) for all the runs of a test."""
    with chaos_session(stack, recover=True) as opened:
        yield opened


@pytest.fixture(autouse=True)
def planted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, ",".join(BUGS))  # pytest's PYTEST_CURRENT_TEST is the test context


def drawn(seed: int, bug: str | None) -> Schedule:
    _, writer_names = default_writers()
    nemesis = Nemesis(stack_inventory(writer_names), intensity="high", max_concurrent=2, writers=writer_names)
    workload = Workload(query_timeout_s=QUERY_TIMEOUT_S, planted=(bug,) if bug else ())
    return nemesis.schedule(seed, DURATION_S, warmup_s=WARMUP_S, workload=workload)


def run(stack: LocalStack, session: Any, schedule: Schedule, report_dir: Path) -> str:
    factory, _ = default_writers()
    return explore(
        stack, schedule, report_dir=report_dir, writers=factory, drain_timeout_s=30.0, session=session
    ).signature


@pytest.mark.parametrize("bug", ["writer-commits-before-iceberg", "producer-retries-without-idempotence"])
def test_explore_finds_the_planted_bug_and_shrink_reduces_it(
    stack: LocalStack, session: Any, bug: str, tmp_path: Path
) -> None:
    seed, signature = CASES[bug]
    schedule = drawn(seed, bug)
    assert len(schedule.faults) == 3
    found = run(stack, session, schedule, tmp_path / "found")
    assert found == signature, json.loads((tmp_path / "found" / "report.json").read_text())["verdict"]["reason"]
    count = iter(range(100))
    result = shrink(
        schedule,
        signature,
        lambda s: run(stack, session, s, tmp_path / f"shrink-{next(count)}"),
        budget=Budget(runs=SHRINK_RUNS),
    )
    assert result.reproduced and len(result.minimal.faults) <= 2, [a.to_dict() for a in result.attempts]
    # The trigger is kept, unless no fault is needed at all: on a loaded machine a produce request can outlast
    # the producer's 3 s socket timeout by itself, and the unidempotent retry then writes twice (the shrinker is
    # right to say so; the same seed without the bug still passes, below).
    assert not result.minimal.faults or result.minimal.faults[0] == schedule.faults[0], "the trigger is kept"
    source = regression_test(result.minimal, found=f"seed {seed}", reason=found, shrunk="test", signature=found)
    compile(source, "test_regression.py", "exec")


def test_cli_explore_shrink_and_the_regression_test_it_writes(stack: LocalStack, tmp_path: Path) -> None:
    bug = "query-without-timeout"
    seed, signature = CASES[bug]
    env = {**os.environ, ENV: bug}
    env.pop("PYTEST_CURRENT_TEST", None)  # the command line must arm it through its own context
    common = ["--data-dir", str(stack.data_dir), "--keep", "--drain-timeout", "30s"]
    explore_cmd = [
        sys.executable,
        "-m",
        "k2",
        "chaos",
        "explore",
        "--seed",
        str(seed),
        "--duration",
        f"{DURATION_S:g}s",
        "--intensity",
        "high",
        "--warmup",
        f"{WARMUP_S:g}s",
        "--query-timeout",
        f"{QUERY_TIMEOUT_S}s",
        "--plant",
        bug,
        "--report-dir",
        str(tmp_path / "found"),
        *common,
    ]
    done = subprocess.run(explore_cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert "HANG" in done.stdout and "shrink it: k2 chaos shrink" in done.stdout
    report = json.loads((tmp_path / "found" / "report.json").read_text())
    assert report["verdict"]["signature"] == signature and report["schedule"]["seed"] == seed
    test_file = tmp_path / "test_regression_hang.py"
    shrink_cmd = [
        sys.executable,
        "-m",
        "k2",
        "chaos",
        "shrink",
        str(tmp_path / "found" / "report.json"),
        "--budget",
        str(SHRINK_RUNS),
        "--report-dir",
        str(tmp_path / "shrink"),
        "--output",
        str(test_file),
        *common,
    ]
    done = subprocess.run(shrink_cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    minimal = Schedule.from_dict(json.loads((tmp_path / "shrink" / "shrink.json").read_text())["minimal"])
    assert 1 <= len(minimal.faults) <= 2
    assert all(f"{call(fault)[0]}(" in test_file.read_text() for fault in minimal.faults)
    # the regression test it wrote fails while the bug is planted (and would pass once it is fixed)
    pytest_cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(test_file),
        "-q",
        "-p",
        "no:cacheprovider",
        "--chaos-data-dir",
        str(stack.data_dir),
        "--chaos-keep-stack",
        "--chaos-report-dir",
        str(tmp_path / "regression"),
    ]
    done = subprocess.run(
        pytest_cmd, env={**env, CONTEXT_ENV: ""}, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 1, done.stdout[-3000:]
    assert "HANG" in done.stdout and "1 failed" in done.stdout


@pytest.mark.parametrize("bug", list(CASES))
def test_the_same_seed_without_the_bug_passes(stack: LocalStack, session: Any, bug: str, tmp_path: Path) -> None:
    seed, _ = CASES[bug]
    schedule = drawn(seed, None)
    assert schedule.faults == drawn(seed, bug).faults, "the planted bug is no part of the draw"
    result = explore(
        stack, schedule, report_dir=tmp_path, writers=default_writers()[0], drain_timeout_s=30.0, session=session
    )
    assert result.verdict is not None and result.verdict.outcome is Outcome.PASS, result.verdict.reason
