"""Ctrl-C on `k2 chaos run` reaches its pytest processes too (one process group). The runner must let them
restore their faults and write their reports: `subprocess.call` used to SIGKILL its child 0.25 s after Ctrl-C,
leaving the restore to the watchdog. SIGTERM sent to the runner alone is passed on to them."""

from __future__ import annotations

import contextlib
import json
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
    from k2.chaos.runner import _Children
    with _Children() as children:
        for path in sys.argv[2:]:
            children.start([sys.executable, "-c", sys.argv[1], path], stdout=subprocess.PIPE, text=True)
        for child in children.procs:
            child.stdout.readline()
        print("ready", flush=True)
        print(children.wait(), flush=True)
    """
)

# A runner that gets its SIGTERM before it has started any child (it starts them when told on stdin).
EARLY_RUNNER = textwrap.dedent(
    """
    import subprocess, sys
    from k2.chaos.runner import _Children
    with _Children() as children:
        print("armed", flush=True)
        sys.stdin.readline()
        for path in sys.argv[2:]:
            children.start([sys.executable, "-c", sys.argv[1], path], stdout=subprocess.DEVNULL)
        print(children.wait(), flush=True)
    """
)

# A runner whose second shard cannot start (its program does not exist) while the first one runs.
FAILING_RUNNER = textwrap.dedent(
    """
    import subprocess, sys
    from k2.chaos.runner import _Children
    with _Children() as children:
        first = children.start([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE, text=True)
        first.stdout.readline()
        children.start([sys.argv[3]])
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


def test_a_sigterm_before_the_shards_start_reaches_them_when_they_do(tmp_path: Path) -> None:
    """The runner forwards SIGTERM from before its first child starts: one that came earlier used to end the
    runner at once (or be lost), leaving its shards to run on without it."""
    marks = [tmp_path / "one", tmp_path / "two"]
    runner = subprocess.Popen(
        [sys.executable, "-c", EARLY_RUNNER, CHILD, *map(str, marks)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert runner.stdout is not None and runner.stdout.readline().strip() == "armed"
        runner.send_signal(signal.SIGTERM)
        out, _ = runner.communicate("start\n", timeout=30)
        # each shard ends: killed outright if the signal beat its handler (-15), else after its restore (0)
        codes = json.loads(out)
        assert len(codes) == 2 and set(codes) <= {0, -signal.SIGTERM}, out
        assert runner.returncode == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.pid, signal.SIGKILL)  # shards left running by a broken runner


def test_a_shard_that_cannot_start_halts_the_ones_already_running(tmp_path: Path) -> None:
    """The runner's error used to end it with its first shard still running the suite without it."""
    mark = tmp_path / "one"
    runner = subprocess.Popen(
        [sys.executable, "-c", FAILING_RUNNER, CHILD, str(mark), str(tmp_path / "no-such-program")],
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        _, err = runner.communicate(timeout=30)
        assert runner.returncode == 1 and "FileNotFoundError" in err  # the error itself still goes on
        assert mark.read_text() == "SIGTERM"  # the running shard was halted and its restore waited for
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.pid, signal.SIGKILL)  # a shard left running by a broken runner
