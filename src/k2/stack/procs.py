"""Processes the stack started: launched detached, identified by pid AND start time, never confused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from k2.chaos.procfs import proc_stat


@dataclass(frozen=True)
class ProcessId:
    """A pid plus the kernel's start time for it, so a recycled pid is never mistaken for ours."""

    pid: int
    starttime: int

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "starttime": self.starttime}


def starttime_of(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot), or None when it is gone or a zombie."""
    st = proc_stat(pid)
    return None if st is None or st.state in ("Z", "X") else st.starttime


def is_alive(proc: ProcessId | None) -> bool:
    return proc is not None and starttime_of(proc.pid) == proc.starttime


def signal_process(proc: ProcessId, sig: int) -> bool:
    """Send sig only if the pid is still the process we started; False when it is already gone."""
    if not is_alive(proc):
        return False
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        return False
    return True


def wait_gone(proc: ProcessId, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(proc):
            return True
        time.sleep(0.02)
    return not is_alive(proc)


def session_members(proc: ProcessId) -> list[ProcessId]:
    """Live processes in the session the service was started in (its session id is its pid),
    started no earlier than it: its children, even after it was itself killed."""
    members = []
    for entry in Path("/proc").iterdir():
        st = proc_stat(int(entry.name)) if entry.name.isdigit() else None
        if st is None or st.state in ("Z", "X"):
            continue
        if st.session == proc.pid and st.starttime >= proc.starttime:
            members.append(ProcessId(st.pid, st.starttime))
    return members


def clear_leftovers(proc: ProcessId, timeout: float = 10.0) -> None:
    """SIGKILL what a dead service left behind (e.g. postgres backends after its postmaster was
    killed) and wait until even its pid is reaped, so a restart finds no stale lock holder."""
    for member in session_members(proc):
        signal_process(member, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not session_members(proc) and not Path(f"/proc/{proc.pid}").exists():
            return
        time.sleep(0.02)


def terminate(proc: ProcessId, stop_signal: int = signal.SIGTERM, timeout: float = 15.0) -> str:
    """Stop gracefully, then SIGKILL after timeout. Returns how it ended: gone | stopped | killed."""
    if not signal_process(proc, stop_signal):
        how = "gone"
    elif wait_gone(proc, timeout):
        how = "stopped"
    else:
        signal_process(proc, signal.SIGKILL)
        wait_gone(proc, 5.0)
        how = "killed"
    clear_leftovers(proc)
    return how


def launch(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log: Path,
    user: str | None = None,
) -> ProcessId:
    """Start argv detached (own session, reparented to init) so it outlives whoever started it.

    A short-lived launcher process does the final fork; we wait for it, so no zombie is left
    behind whether the caller is the CLI (which exits) or a long test run.
    """
    request = {"argv": list(argv), "env": dict(env), "cwd": str(cwd), "log": str(log), "user": user}
    done = subprocess.run(
        [sys.executable, "-m", "k2.stack.launcher"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        raise OSError(done.stderr.strip() or f"launcher exited {done.returncode}")
    pid = int(done.stdout.strip())
    started = starttime_of(pid)
    if started is None:
        # It already exited: report it with the starttime we can no longer read.
        return ProcessId(pid, -1)
    return ProcessId(pid, started)
