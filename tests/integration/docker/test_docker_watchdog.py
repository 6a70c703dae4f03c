"""A runner SIGKILLed while it holds a container paused or disconnected: its watchdog rebuilds the
target from the journal alone (`describe()` -> `target_from_description`) and restores it."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from k2.chaos.journal import read_entries
from k2.chaos.targets.base import wait_until
from k2.chaos.targets.docker_net import snapshot
from tests.integration.docker.helpers import Lab, kafka_probe, require_docker

require_docker()

RUNNER = """
import sys, time
from k2.chaos.faults import network_partition, service_failure
from k2.chaos.session import ChaosSession, ServiceTargets
from k2.chaos.targets.docker import DockerTarget

project, journal, mode = sys.argv[1:4]
target = DockerTarget.find("kafka", project=project)
session = ChaosSession([ServiceTargets("kafka", target)], journal).__enter__()
if mode == "pause":
    service_failure("kafka", duration_seconds=None, mode="pause").__enter__()
else:
    network_partition("kafka", duration_seconds=None).__enter__()
print("injected", flush=True)
time.sleep(600)
"""


def start_runner(project: str, journal: Path, mode: str) -> subprocess.Popen[bytes]:
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, project, str(journal), mode], stdout=subprocess.PIPE)
    assert runner.stdout is not None
    ready, _, _ = select.select([runner.stdout], [], [], 60)
    line = runner.stdout.readline() if ready else b""
    if line.strip() != b"injected":
        runner.kill()
        pytest.fail(f"the runner did not inject its fault within 60 s (exit {runner.wait()})")
    return runner


@pytest.mark.parametrize("mode", ["pause", "partition"])
def test_watchdog_restores_the_container_after_the_runner_is_sigkilled(lab: Lab, tmp_path: Path, mode: str) -> None:
    pinned, auto = lab.network("pinned"), lab.network("auto", pinned=False)
    container, bootstrap = lab.tansu(pinned)
    auto.connect(container, aliases=["broker"])
    lab.wait_healthy(container)
    container.reload()
    before = snapshot(container.attrs)
    journal = tmp_path / "journal.jsonl"
    probe = kafka_probe(bootstrap.split(":")[0], 9092)

    runner = start_runner(lab.project, journal, mode)
    try:
        container.reload()
        if mode == "pause":
            assert container.attrs["State"]["Paused"]
        else:
            assert container.attrs["NetworkSettings"]["Networks"] == {}
        assert not probe(1.0)
        os.kill(runner.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        runner.wait(10)

        def restored() -> bool:
            container.reload()
            state, nets = container.attrs["State"], container.attrs["NetworkSettings"]["Networks"]
            return not state["Paused"] and len(nets) == len(before)

        assert wait_until(restored, 30, cap=0.05), f"{mode} not restored 30 s after the runner died"
        latency = time.monotonic() - killed_at
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    keep = ("name", "aliases", "ipv4", "ipv4_pinned")
    assert [{k: e[k] for k in keep} for e in snapshot(container.attrs)] == [{k: e[k] for k in keep} for e in before]
    assert wait_until(lambda: probe(1.0), 10, cap=0.2), "the broker does not answer after the restore"
    assert wait_until(lambda: all(not e.pending for e in read_entries(journal).values()), 10, cap=0.05)
    print(f"watchdog restored {mode} {latency * 1000:.0f} ms after the runner's SIGKILL")
