"""`k2 chaos explore` on the docker backend: a planted bug found through container faults (docker pause of the
broker's container), with the same verdict as on local processes; the report says which backend did what."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from k2.explore.explorer import explore
from k2.explore.inventory import stack_inventory
from k2.explore.nemesis import Nemesis
from k2.explore.schedule import Workload
from k2.explore.writers import default_writers
from k2.platform.planted import BUGS, ENV
from k2.stack import open_stack
from tests.integration.docker.helpers import require_docker

require_docker()

SEED, BUG = 424, "producer-retries-without-idempotence"  # 12 s, 2 faults; #1 docker-pauses Kafka for 4 s


def test_explore_finds_planted_duplicates_through_a_container_pause(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV, ",".join(BUGS))
    factory, writer_names = default_writers()
    nemesis = Nemesis(stack_inventory(writer_names), intensity="high", max_concurrent=2, writers=writer_names)
    schedule = nemesis.schedule(SEED, 12.0, warmup_s=3.0, workload=Workload(planted=(BUG,)))
    assert [(f.kind, f.target, f.params.get("mode")) for f in schedule.faults][-1] == (
        "service_failure",
        "kafka",
        "pause",
    )
    root = Path(tempfile.mkdtemp(prefix="k2-test-"))
    stack = open_stack(root / "stack", backend="docker")
    try:
        stack.up()
        result = explore(stack, schedule, report_dir=tmp_path, writers=factory, drain_timeout_s=30.0)
    finally:
        stack.down(purge=True)
        shutil.rmtree(root, ignore_errors=True)
    assert result.signature == "data_loss:duplicated", result.verdict.reason if result.verdict else result.data.status
    faults = json.loads((tmp_path / "report.json").read_text())["run"]["faults"]
    pause = next(f for f in faults if f["kind"] == "service_failure")
    assert pause["effect"]["backend"] == "docker" and pause["restored_s"] is not None
