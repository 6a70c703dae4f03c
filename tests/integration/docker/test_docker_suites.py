"""The main job on the docker backend: `k2 chaos run --backend docker` runs every shipped scenario, with the
same fault calls and fixtures, against containers (two stacks at once by default: a Compose project each),
and the report says so."""

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

from k2.chaos.report import load_json
from k2.chaos.report.model import accounting_problems
from k2.chaos.runner import RunOptions, dry_run
from k2.chaos.targets.docker_engine import LABEL_PROJECT

pytestmark = pytest.mark.integration


@pytest.fixture
def root() -> Iterator[Path]:
    made = Path(tempfile.mkdtemp(prefix="k2-dsuite-"))
    yield made
    shutil.rmtree(made, ignore_errors=True)


def test_every_shipped_scenario_runs_on_containers(engine: Any, root: Path) -> None:
    expected = {item["nodeid"].split("::", 1)[1] for item in dry_run(RunOptions(verbose=False))}
    reports = root / "reports"
    before = _projects(engine)
    done = subprocess.run(
        [sys.executable, "-m", "k2", "chaos", "run", "--backend", "docker", f"--report-dir={reports}"],
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
    shards = sorted((reports / "shards").glob("*/report.json"))
    assert len(shards) == 2 and all(load_json(shard).backend == "docker" for shard in shards), output[-4000:]
    assert _projects(engine) == before  # each shard took its stack (containers and network) down


def _projects(engine: Any) -> set[tuple[str, str]]:
    """Every container and network that belongs to a Compose project on the engine, by project and id."""
    containers = engine.api.containers(all=True, filters={"label": LABEL_PROJECT})
    networks = engine.api.networks(filters={"label": LABEL_PROJECT})
    return {(row["Labels"][LABEL_PROJECT], row["Id"]) for row in [*containers, *networks]}
