"""Ctrl-C on `k2 chaos run` reaches its pytest processes too (one process group). The runner must let them
restore their faults and write their reports: `subprocess.call` used to SIGKILL its child 0.25 s after Ctrl-C,
leaving the restore to the watchdog. SIGTERM sent to the runner alone is passed on to them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

# A stand-in for a shard's pytest: on SIGINT or SIGTERM it takes a while to restore, then says so and exits.
CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    done = Path(sys.argv[1])
    def restore(signum, frame):
        time.sleep(1.0)  # the restore's own work, longer than the 0.25 s subprocess.call gives
        done.write_text(signal.Signals(signum).name)
        sys.exit(0)
    signal.signal(signal.SIGINT, restore)
    signal.signal(signal.SIGTERM, restore)
    print("ready", flush=True)
    signal.pause()
    """
)

RUNNER = textwrap.dedent(
    """
    import subprocess, sys
    from k2.chaos.runner import _wait
    children = [subprocess.Popen([sys.executable, "-c", sys.argv[1], path], stdout=subprocess.PIPE, text=True)
                for path in sys.argv[2:]]
    for child in children:
        child.stdout.readline()
    print("ready", flush=True)
    print(_wait(children), flush=True)
    """
)


def _runner(tmp_path: Path) -> tuple[subprocess.Popen[str], list[Path]]:
    marks = [tmp_path / "one", tmp_path / "two"]
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER, CHILD, *map(str, marks)],
        stdout=subprocess.PIPE, text=True, start_new_session=True,  # its own group: a terminal's Ctrl-C
    )  # fmt: skip
    assert runner.stdout is not None and runner.stdout.readline().strip() == "ready"
    return runner, marks


def test_ctrl_c_lets_every_shard_finish_its_restore(tmp_path: Path) -> None:
    runner, marks = _runner(tmp_path)
    os.killpg(runner.pid, signal.SIGINT)  # what a terminal does on Ctrl-C: the whole foreground group
    out, _ = runner.communicate(timeout=30)
    assert out.strip() == "[0, 0]" and runner.returncode == 0
    assert [mark.read_text() for mark in marks] == ["SIGINT", "SIGINT"]


def test_sigterm_to_the_runner_is_passed_on(tmp_path: Path) -> None:
    runner, marks = _runner(tmp_path)
    runner.send_signal(signal.SIGTERM)  # only the runner: `k2 chaos halt`, a CI's timeout
    out, _ = runner.communicate(timeout=30)
    assert out.strip() == "[0, 0]"
    assert [mark.read_text() for mark in marks] == ["SIGTERM", "SIGTERM"]
