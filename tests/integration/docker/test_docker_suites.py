"""The main job on the docker backend: `k2 chaos run --backend docker` runs every shipped scenario, with the
same fault calls and fixtures, against containers, and the report says so."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k2.chaos.report.model import accounting_problems
from k2.chaos.runner import RunOptions, dry_run
from tests.integration.docker.test_docker_stack import project_containers

pytestmark = pytest.mark.integration


@pytest.fixture
def root() -> Iterator[Path]:
    made = Path(tempfile.mkdtemp(prefix="k2-dsuite-"))
    yield made
    shutil.rmtree(made, ignore_errors=True)


def test_every_shipped_scenario_runs_on_containers(engine: Any, root: Path) -> None:
    from k2.stack.docker_stack import default_project

    expected = {item["nodeid"].split("::", 1)[1] for item in dry_run(RunOptions(verbose=False))}
    data_dir, reports = root / "stack", root / "reports"
    done = subprocess.run(
        [sys.executable, "-m", "k2", "chaos", "run", "--backend", "docker", f"--data-dir={data_dir}",
         f"--report-dir={reports}"],
        capture_output=True, text=True, timeout=1500, check=False, cwd=root,
    )  # fmt: skip
    output = "\n".join(line for line in (done.stdout + done.stderr).splitlines() if not line.startswith("%"))
    assert (reports / "report.json").exists(), output[-4000:]
    report = json.loads((reports / "report.json").read_text())
    outcomes = {s["nodeid"].split("::", 1)[1]: s["outcome"] for s in report["scenarios"]}
    failed = [f"{s['name']}: {s['outcome']} (expected {s['expected']}): {s['reason']} {s['error'] or ''}"[:2000]
              for s in report["scenarios"] if not s["as_expected"]]  # fmt: skip
    assert done.returncode == 0 and not failed, "\n".join(failed) or output[-4000:]
    assert report["backend"] == "docker"
    assert set(outcomes) == expected
    # The checker looked at every scenario, and its counts and the ledger's add up in each (issue #10)
    assert all(s["check"] for s in report["scenarios"]), [s["name"] for s in report["scenarios"] if not s["check"]]
    broken = {s["nodeid"]: accounting_problems(s) for s in report["scenarios"] if accounting_problems(s)}
    assert not broken, broken
    assert all(s["check"]["unreadable"] == [] for s in report["scenarios"])
    # The services' own faults went through Docker: `docker start` reports the container's network address,
    # `docker pause` the container's Paused state (a process target reports neither).
    failures = [f for s in report["scenarios"] for f in s["faults"]
                if f["kind"] == "service_failure" and f["target"] in ("kafka", "s3", "postgres")]  # fmt: skip
    assert failures
    for fault in failures:
        assert fault["effect"]["backend"] == "docker" and fault["restore_effect"]["backend"] == "docker", fault
    assert project_containers(engine, default_project(data_dir.absolute())) == {}  # the run took its stack down
