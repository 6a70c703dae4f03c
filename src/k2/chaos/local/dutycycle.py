"""CPU cap without a cgroup: duty-cycled SIGSTOP/SIGCONT of the tree (the `cpulimit` method).

A loop process (`python -m k2.chaos.local.dutycycle`) gives the tree `quota` µs of CPU time per
`period` µs as cpu.cfs_quota_us does: at each period start it SIGCONTs the tree, reads the tree's CPU
clocks (ns, all threads) and SIGSTOPs it once it used its quota, until the next period. It polls
more often as the quota runs out (at least every ~1 ms near the end), so the tree overshoots by about
that much CPU per core and period: the measured share stays within `TOLERANCE` of a core of the cap.
Children forked mid-way are found at the next full tree walk (every second).

The loop holds the read end of a pipe whose write end only the runner holds: when the runner ends,
normally or SIGKILLed, the loop sees EOF, SIGCONTs the tree and exits, so the tree is left running;
the watchdog and `k2 chaos recover` end a loop that survived (by pid + start time) and SIGCONT the tree.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any, ClassVar

from k2.chaos.errors import InjectionFailed, RestoreFailed
from k2.chaos.local.common import DUTY_CYCLE, Tree
from k2.chaos.local.sigstop import signal_tree, stopped
from k2.chaos.procfs import is_alive, proc_stat, process_tree, send_signal
from k2.chaos.targets.base import wait_until

__all__ = ["TOLERANCE", "DutyCycleCpu", "main", "tree_cpu_ns"]

TOLERANCE = 0.05  # cores: the measured share stays below cap + this (stated in README and the effect)
MIN_STEP_S = 0.0005
WALK_EVERY_S = 1.0
READY_TIMEOUT_S = 15.0


def cpu_ns(pid: int) -> int | None:
    """The CPU time of process `pid` (all its threads, living and exited) in ns; None if it is gone."""
    try:
        return time.clock_gettime_ns(((~pid) << 3) | 2)  # the process's CPUCLOCK_SCHED clock id
    except OSError:
        return None


def tree_cpu_ns(members: list[tuple[int, int]]) -> int:
    return sum(ns for ns in (cpu_ns(p) for p, _ in members) if ns is not None)


class DutyCycleCpu:
    """The runner's side: start the loop, record it in the tree's state, stop it and read what it did."""

    name: ClassVar[str] = DUTY_CYCLE

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self._proc: subprocess.Popen[bytes] | None = None

    def _loop(self) -> tuple[int, int] | None:
        rec = self.tree.state.dutycycle
        return (int(rec["pid"]), int(rec["starttime"])) if rec.get("pid") else None

    def capped(self) -> bool:
        loop = self._loop()
        return loop is not None and is_alive(*loop)

    def cap(self, members: list[tuple[int, int]], quota_us: int, period_us: int) -> dict[str, Any]:
        if self.tree.state.stopped:
            raise InjectionFailed(
                f"{self.tree.label}: it is paused by SIGSTOP, which a duty-cycled CPU cap would undo every "
                "period: resume it first, or use a cgroup mechanism for one of the two"
            )
        (pid, start), t0 = members[0], time.monotonic()
        argv = [sys.executable, "-m", "k2.chaos.local.dutycycle", f"--pid={pid}", f"--starttime={start}",
                f"--quota-us={quota_us}", f"--period-us={period_us}"]  # fmt: skip
        # Its own session: the runner's Ctrl-C reaches the runner, which then stops the loop in order.
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        self._proc = proc
        hello = _read_line(proc, READY_TIMEOUT_S)
        if hello.get("ready") is not True:
            self._end_own(5.0)
            raise self.tree.failed(f"the duty-cycle loop did not start: {hello.get('error') or hello or 'no answer'}")
        loop_start = proc_stat(proc.pid)
        assert loop_start is not None  # it just answered
        self.tree.state.dutycycle = {"pid": proc.pid, "starttime": loop_start.starttime,
                                     "quota_us": quota_us, "period_us": period_us}  # fmt: skip
        return {
            "mechanism": self.name,
            "quota_us": hello["quota_us"],
            "period_us": hello["period_us"],
            "loop_pid": proc.pid,
            "pids": hello["pids"],
            "cap_share": round(quota_us / period_us, 4),
            "tolerance": TOLERANCE,
            "start_s": round(time.monotonic() - t0, 4),
        }

    def stats(self) -> dict[str, Any]:
        """Not read from the loop while it runs: `observe` measures the tree's share directly."""
        return {}

    def uncap(self, timeout: float) -> dict[str, Any] | None:
        loop = self._loop()
        if loop is None and self._proc is None:
            return None
        final = self._end_own(timeout) if self._proc is not None else {}
        if loop is not None and is_alive(*loop):  # recovery in another process: end it by pid + start time
            send_signal(*loop, signal.SIGTERM)
            if not wait_until(lambda: not is_alive(*loop), timeout):
                send_signal(*loop, signal.SIGKILL)
                wait_until(lambda: not is_alive(*loop), 5.0)
        if loop is not None and is_alive(*loop):
            raise RestoreFailed(f"{self.tree.label}: the duty-cycle loop pid {loop[0]} survived SIGKILL")
        # A loop killed mid-period leaves the tree stopped: resume what is stopped.
        resumed = [p for p, _ in signal_tree(self.tree, [m for m in self.tree.members() if stopped(m[0])],
                                             signal.SIGCONT)]  # fmt: skip
        if not wait_until(lambda: not any(stopped(p) for p, _ in self.tree.members()), timeout):
            raise RestoreFailed(f"{self.tree.label}: the tree is still stopped after SIGCONT; `kill -CONT` it")
        rec, self.tree.state.dutycycle = self.tree.state.dutycycle, {}
        measured: dict[str, Any] = {"mechanism": self.name, "restored": True, "resumed_after_loop": resumed}
        if final.get("wall_ns"):
            share = final["cpu_ns"] / final["wall_ns"]
            cap = rec.get("quota_us", 0) / max(1, rec.get("period_us", 1))
            counters = {"nr_periods": final["periods"], "nr_throttled": final["throttled"]}
            measured |= {
                "counters": counters | {"throttled_time": final["stopped_ns"]},
                "cpu_share": round(share, 4),
                "cap_share": round(cap, 4),
                "within_tolerance": share <= cap + TOLERANCE,
            }
        return measured

    def _end_own(self, timeout: float) -> dict[str, Any]:
        """Stop the loop this process started (EOF on its pipe) and read its final report."""
        proc, self._proc = self._proc, None
        if proc is None:
            return {}
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.close()
        final = _read_line(proc, timeout)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        return final


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    """One JSON line from the loop, or {} at the deadline or EOF."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return {}
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    try:
        answer = json.loads(data.split(b"\n", 1)[0] or b"{}")
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


# -- the loop process ------------------------------------------------------------------------------------


class _Stop(Exception):
    """The runner closed the pipe, or the loop got SIGTERM/SIGINT/SIGHUP."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop


class _Loop:
    """The tree as pidfds (opened, then checked against the start time, so a reused pid is never signalled)."""

    def __init__(self, pid: int, starttime: int) -> None:
        self.pid, self.starttime = pid, starttime
        self.fds: dict[tuple[int, int], int] = {}
        self.stopped = False
        self.walked = 0.0

    def walk(self) -> None:
        self.walked = time.monotonic()
        tree = set(process_tree(self.pid, self.starttime))
        for member in [m for m in self.fds if m not in tree]:
            os.close(self.fds.pop(member))
        for member in tree - set(self.fds):
            try:
                fd = os.pidfd_open(member[0])
            except ProcessLookupError:
                continue
            if not is_alive(*member):
                os.close(fd)
                continue
            signal.pidfd_send_signal(fd, 0)  # raises PermissionError if this user may not signal it
            self.fds[member] = fd
            if self.stopped:
                self._send(member, signal.SIGSTOP)

    def _send(self, member: tuple[int, int], sig: int) -> None:
        try:
            signal.pidfd_send_signal(self.fds[member], sig)
        except ProcessLookupError:
            os.close(self.fds.pop(member))

    def set_stopped(self, stop: bool) -> None:
        for member in list(self.fds):
            self._send(member, signal.SIGSTOP if stop else signal.SIGCONT)
        self.stopped = stop

    def cpu(self) -> dict[tuple[int, int], int]:
        return {m: ns for m in self.fds if (ns := cpu_ns(m[0])) is not None}


def _wait(seconds: float) -> None:
    """Sleep, waking (and stopping) as soon as the runner closes the pipe or writes to it."""
    if seconds > 0 and select.select([0], [], [], seconds)[0]:
        os.read(0, 64)
        raise _Stop


def _run(loop: _Loop, quota_ns: int, period_ns: int, totals: dict[str, int]) -> None:
    ncpu = os.cpu_count() or 1
    while True:
        start = time.monotonic_ns()
        end = start + period_ns
        if time.monotonic() - loop.walked >= WALK_EVERY_S:
            loop.walk()
        if loop.stopped:
            loop.set_stopped(False)
        base = loop.cpu()
        totals["periods"] += 1
        while True:
            now_cpu = loop.cpu()
            used = sum(ns - base[m] for m, ns in now_cpu.items() if m in base)
            now = time.monotonic_ns()
            if used >= quota_ns and now < end:
                loop.set_stopped(True)
                totals["throttled"] += 1
                totals["stopped_ns"] += end - now
                _wait((end - now) / 1e9)
                break
            if now >= end:
                break
            # Wake before the quota can run out even if the tree uses every core.
            step = max(MIN_STEP_S, (quota_ns - used) / 1e9 / ncpu)
            _wait(min((end - now) / 1e9, step))
        totals["cpu_ns"] += sum(ns - base[m] for m, ns in loop.cpu().items() if m in base)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="k2.chaos.local.dutycycle", description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--starttime", type=int, required=True)
    parser.add_argument("--quota-us", type=int, required=True)
    parser.add_argument("--period-us", type=int, required=True)
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(-5)  # timely under load when allowed (root); harmless otherwise
    loop = _Loop(args.pid, args.starttime)
    totals = {"periods": 0, "throttled": 0, "stopped_ns": 0, "cpu_ns": 0}
    t0 = time.monotonic_ns()
    try:
        try:
            loop.walk()
        except PermissionError as exc:
            _say({"error": f"this user may not signal the tree of pid {args.pid}: {exc}"})
            return 1
        if not loop.fds:
            _say({"error": f"pid {args.pid} (start time {args.starttime}) is not running"})
            return 1
        _say({"ready": True, "pids": sorted(p for p, _ in loop.fds), "quota_us": args.quota_us,
              "period_us": args.period_us})  # fmt: skip
        _run(loop, args.quota_us * 1000, args.period_us * 1000, totals)
    except _Stop:
        pass
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the resume short
        loop.set_stopped(False)  # the tree is always left running
    _say(totals | {"wall_ns": time.monotonic_ns() - t0})
    return 0


def _say(message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the runner is gone: nobody to tell
        os.write(1, (json.dumps(message) + "\n").encode())


if __name__ == "__main__":
    sys.exit(main())
