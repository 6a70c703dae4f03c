"""Watchdog: exits quietly when told, recovers when the runner is gone, ignores the runner's group signals."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests import host

from k2.chaos.journal import Journal
from k2.chaos.targets.base import wait_until
from k2.chaos.targets.process import ProcessSpec, ProcessTarget, is_alive, proc_stat
from k2.chaos.watchdog import Watchdog, default_log_path

needs_freezer = host.v1_freezer


def _log_events(journal: Path) -> list[dict[str, object]]:
    events = []
    for line in default_log_path(journal).read_text().splitlines():
        _, _, message = line.partition(": ")
        if message.startswith("{"):
            events.append(json.loads(message))
    return events


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_normal_end_exits_without_recovery(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    watchdog = Watchdog.start(journal)
    assert is_alive(watchdog.pid, proc_stat(watchdog.pid).starttime)  # type: ignore[union-attr]
    watchdog.stop()
    assert watchdog.proc.returncode == 0
    log = default_log_path(journal).read_text()
    assert "ended normally" in log and _log_events(journal) == []


@needs_freezer
def test_dead_runner_means_immediate_recovery(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    journal_path = tmp_path / "journal.jsonl"
    target = ProcessTarget(ProcessSpec.for_pid("svc", sleeper.pid, run_id=f"unit-{uuid.uuid4().hex[:8]}"))
    try:
        with Journal(journal_path) as journal:
            journal.inject(target, "pause")
        # Our pid with a wrong start time: the runner it names is certainly gone.
        argv = ["--journal", str(journal_path), "--runner-pid", str(os.getpid()), "--runner-starttime", "1"]
        code = subprocess.run(
            [sys.executable, "-m", "k2.chaos.watchdog", *argv],
            stdout=subprocess.DEVNULL,
            timeout=30,
            check=False,
        ).returncode
        assert code == 0
        assert proc_stat(sleeper.pid).state == "S"  # type: ignore[union-attr]
        [event] = _log_events(journal_path)
        assert event["event"] == "recovered" and len(event["restored"]) == 1  # type: ignore[arg-type]
    finally:
        target.resume()


RUNNER = """
import sys, time
from k2.chaos.watchdog import Watchdog
wd = Watchdog.start(sys.argv[1])
print(wd.pid, flush=True)
time.sleep(60)
"""


def test_runner_group_signals_do_not_reach_it(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    runner = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(RUNNER), str(journal)], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert runner.stdout is not None
        assert select.select([runner.stdout], [], [], 20)[0], "runner did not start its watchdog"
        wd_pid = int(runner.stdout.readline())
        wd_start = proc_stat(wd_pid).starttime  # type: ignore[union-attr]
        os.killpg(runner.pid, signal.SIGINT)  # what Ctrl-C does to the runner's foreground group
        runner.wait(10)
        assert wait_until(lambda: not is_alive(wd_pid, wd_start), 10.0), "watchdog did not exit"
        log = default_log_path(journal).read_text()
        assert f"runner {runner.pid} died" in log
        [event] = _log_events(journal)
        assert event["event"] == "recovered" and event["pending"] == []
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait(10)
