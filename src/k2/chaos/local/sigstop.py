"""Pause without a cgroup: SIGSTOP every process of the tree, SIGCONT on resume.

Needs no privilege beyond signalling the tree (the same user, or root). Unlike a freezer the tree
can observe it: its parent gets SIGCHLD (CLD_STOPPED, then CLD_CONTINUED) and a SIGCONT handler runs
on resume, and /proc shows every thread in state 'T', which is how K2 verifies it.
"""

from __future__ import annotations

import signal
import time
from typing import Any, ClassVar

from k2.chaos.errors import InjectionFailed, RestoreFailed
from k2.chaos.local.common import SIGSTOP, Tree, answers_again, task_states, unanswered
from k2.chaos.procfs import is_alive, send_signal
from k2.chaos.targets.base import Probe, wait_until

__all__ = ["OBSERVABLE", "SigstopFreezer", "signal_tree", "stopped"]

OBSERVABLE = (
    "the tree can observe this pause: its parent gets SIGCHLD (CLD_STOPPED/CLD_CONTINUED) and a SIGCONT "
    "handler runs on resume (a cgroup freezer is invisible to it)"
)


def stopped(pid: int) -> bool:
    """Every thread of `pid` in job-control stop ('T'); False if it is gone."""
    states = task_states(pid)
    return bool(states) and set(states) == {"T"}


def signal_tree(tree: Tree, members: list[tuple[int, int]], sig: int) -> list[tuple[int, int]]:
    """Send `sig` to each member by pid + start time; returns those that got it. A member of another user
    raises InjectionFailed naming it (signals need the same user or root)."""
    sent = []
    for pid, start in members:
        try:
            if send_signal(pid, start, sig):
                sent.append((pid, start))
        except PermissionError as exc:
            why = f"pid {pid} may not be signalled by this user ({exc}): run K2 as its owner or root"
            raise tree.failed(why) from exc
    return sent


class SigstopFreezer:
    """pause = SIGSTOP of the whole tree, verified by /proc state 'T' of every thread and an unanswered probe."""

    name: ClassVar[str] = SIGSTOP

    def __init__(self, tree: Tree) -> None:
        self.tree = tree

    def frozen(self) -> bool:
        return any(is_alive(p, s) for p, s in self.tree.state.stopped)

    def freeze(self, members: list[tuple[int, int]], timeout: float, probe: Probe | None) -> dict[str, Any]:
        t0 = time.monotonic()
        record = self.tree.state.stopped
        # A member already stopped (by a debugger's user, a shell) is not K2's to resume later.
        already = {m for m in members if stopped(m[0])}
        try:
            for _ in range(20):  # children forked between the walk and their parent's stop; bounded
                done = {(p, s) for p, s in record} | already
                new = [m for m in self.tree.members() if m not in done]
                if not new:
                    break
                record.extend([p, s] for p, s in signal_tree(self.tree, new, signal.SIGSTOP))
            pids = [p for p, _ in record]
            if not wait_until(lambda: all(stopped(p) or not task_states(p) for p in pids), timeout):
                states = {str(p): "".join(sorted(set(task_states(p)))) for p in pids}
                raise self.tree.failed(f"not every thread shows stopped ('T') after {timeout:g}s: {states}")
            left = [p for p, s in self.tree.members() if (p, s) not in already and not stopped(p)]
            if left:
                raise self.tree.failed(f"pids {left} of the tree keep running (forking faster than K2 stops them?)")
            freeze_s = time.monotonic() - t0
            answered = unanswered(self.tree, probe)
        except InjectionFailed:
            self.thaw(timeout, None)
            raise
        return {
            "mechanism": self.name,
            "freezer_state": "STOPPED",
            "pids": pids,
            "states": {str(p): "".join(sorted(set(task_states(p)))) or None for p in pids},
            "already_stopped": sorted(p for p, _ in already),
            "freeze_s": round(freeze_s, 6),
            "probe_answered": answered,
            "observable": OBSERVABLE,
        }

    def thaw(self, timeout: float, probe: Probe | None) -> dict[str, Any] | None:
        record = [(p, s) for p, s in self.tree.state.stopped]
        # Recovering from a description written before the stop landed: the tree's stopped members.
        targets = record or [m for m in self.tree.members() if stopped(m[0])]
        if not targets:
            return None
        label = self.tree.label
        try:
            resumed = signal_tree(self.tree, targets, signal.SIGCONT)
        except InjectionFailed as exc:
            raise RestoreFailed(f"{exc}; then `k2 chaos recover`") from exc
        pids = [p for p, _ in resumed]
        if not wait_until(lambda: not any(stopped(p) for p in pids), timeout):
            still = [p for p in pids if stopped(p)]
            raise RestoreFailed(f"{label}: pids {still} still stopped after SIGCONT; `kill -CONT {still[0]}`")
        self.tree.state.stopped.clear()
        answered = answers_again(self.tree, probe, timeout)
        return {
            "mechanism": self.name,
            "resumed": pids,
            "states": {str(p): "".join(sorted(set(task_states(p)))) or None for p in pids},
            "probe_answered": answered,
        }
