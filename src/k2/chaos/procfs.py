"""What K2 reads of a process in /proc, and the one safe way it signals one.

Safety rule: a pid is only touched while its /proc start time matches the one recorded for it; signals
go through a pidfd opened before that check, so a reused pid is never signalled.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

__all__ = ["ProcStat", "is_alive", "proc_stat", "process_tree", "send_signal"]


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat K2 uses (clock ticks for the times)."""

    pid: int
    state: str
    ppid: int
    session: int
    utime: int
    stime: int
    starttime: int


def proc_stat(pid: int) -> ProcStat | None:
    """Parse /proc/<pid>/stat; None if the process does not exist."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        text = os.read(fd, 4096).decode(errors="replace")
    except ProcessLookupError:  # exited between open and read
        return None
    finally:
        os.close(fd)
    # comm (field 2) may contain spaces and parentheses: fields resume after the last ')'.
    rest = text[text.rindex(")") + 2 :].split()
    return ProcStat(pid, rest[0], int(rest[1]), int(rest[3]), int(rest[11]), int(rest[12]), int(rest[19]))


def is_alive(pid: int, starttime: int) -> bool:
    """True if `pid` runs and is the process that started at `starttime` (zombies count as gone)."""
    st = proc_stat(pid)
    return st is not None and st.starttime == starttime and st.state not in ("Z", "X")


def process_tree(pid: int, starttime: int) -> list[tuple[int, int]]:
    """The live (pid, starttime) of `pid` and all its descendants, leader first; [] if it is gone.

    If the leader leads its own session (K2's stack starts every service so), processes of that
    session started after it count too, which catches daemons that double-forked away from it.
    """
    stats: dict[int, ProcStat] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = proc_stat(int(entry.name))
            if st is not None and st.state not in ("Z", "X"):
                stats[st.pid] = st
    root = stats.get(pid)
    if root is None or root.starttime != starttime:
        return []
    children: dict[int, list[ProcStat]] = {}
    for st in stats.values():
        children.setdefault(st.ppid, []).append(st)
    seen = {pid}
    tree, queue = [], [root]
    while queue:
        node = queue.pop(0)
        tree.append((node.pid, node.starttime))
        # A child cannot predate its parent; one that does is a reused pid, not a descendant.
        kids = [c for c in children.get(node.pid, []) if c.starttime >= node.starttime and c.pid not in seen]
        seen.update(c.pid for c in kids)
        queue.extend(kids)
    if root.session == pid:
        tree += [(s.pid, s.starttime) for s in stats.values() if s.session == pid and s.starttime >= starttime
                 and s.pid not in seen]  # fmt: skip
    return tree


def send_signal(pid: int, starttime: int, sig: int) -> bool:
    """Signal `pid` only if it is still the process that started at `starttime`; False if it is gone."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        # The pidfd pins this exact process: checked after opening, the check cannot go stale.
        if not is_alive(pid, starttime):
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)
