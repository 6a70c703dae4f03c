"""What every local mechanism shares: the names, the tree it works on, its recorded state, /proc reads.

A mechanism does one thing to one process tree (freeze it, cap its CPU, cap its memory) one way,
verifies it from outside, and undoes it from `TreeState` alone, which the target's `describe()`
carries into the journal, so the watchdog or `k2 chaos recover` can undo it in another process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from k2.chaos.errors import InjectionFailed, RestoreFailed
from k2.chaos.targets.base import Probe, wait_until

__all__ = ["CGROUP_V1", "CGROUP_V2", "CPU", "DUTY_CYCLE", "FREEZE", "MECHANISMS", "MEMORY", "RLIMIT", "SIGSTOP"]
__all__ += ["CpuCap", "Freezer", "MemoryCap", "Tree", "TreeState", "answers_again", "ask", "proc_status"]
__all__ += ["task_states", "unanswered"]

# What is done to the tree (the keys of TreeState.mechanisms).
FREEZE, CPU, MEMORY = "freeze", "cpu", "memory"
# How. Each name is stated in the effect and the report.
CGROUP_V1, CGROUP_V2 = "cgroup-v1", "cgroup-v2"
SIGSTOP, DUTY_CYCLE, RLIMIT = "sigstop", "duty-cycle", "rlimit"
MECHANISMS: dict[str, tuple[str, ...]] = {
    FREEZE: (CGROUP_V1, CGROUP_V2, SIGSTOP),
    CPU: (CGROUP_V1, CGROUP_V2, DUTY_CYCLE),
    MEMORY: (CGROUP_V1, CGROUP_V2, RLIMIT),
}
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class TreeState:
    """Everything an exact undo needs, JSON-able; shared by the mechanisms and the target's describe().

    `home`: v1 controller (or "cgroup2") -> the tree's group before K2; `previous`: the same keys ->
    pid -> its group before it was moved; `prev_values`: "cpu"/"memory" -> the limits in force before
    (to verify the restore); `mechanisms`: freeze/cpu/memory -> the mechanism chosen for this tree,
    `why`: what ruled out the preferred ones; `stopped`: [pid, starttime] K2 SIGSTOPped to pause;
    `dutycycle`: the CPU cap's loop process; `rlimits`: resource, value and each pid's limits before.
    """

    home: dict[str, str] = field(default_factory=dict)
    previous: dict[str, dict[int, str]] = field(default_factory=dict)
    prev_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    mechanisms: dict[str, str] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    stopped: list[list[int]] = field(default_factory=list)
    dutycycle: dict[str, Any] = field(default_factory=dict)
    rlimits: dict[str, Any] = field(default_factory=dict)

    def local(self) -> dict[str, Any]:
        """The part `describe()` keeps under "local" (home/previous/prev_values stay where they were)."""
        data = asdict(self)
        for key in ("home", "previous", "prev_values"):
            del data[key]
        return data

    @classmethod
    def build(
        cls,
        home: dict[str, str] | None = None,
        previous: dict[str, dict[int, str]] | None = None,
        prev_values: dict[str, dict[str, Any]] | None = None,
        local: dict[str, Any] | None = None,
    ) -> TreeState:
        local = dict(local or {})
        return cls(
            home=dict(home or {}),
            previous={c: {int(p): path for p, path in m.items()} for c, m in (previous or {}).items()},
            prev_values={c: dict(v) for c, v in (prev_values or {}).items()},
            mechanisms=dict(local.get("mechanisms") or {}),
            why=dict(local.get("why") or {}),
            stopped=[[int(p), int(s)] for p, s in local.get("stopped") or []],
            dutycycle=dict(local.get("dutycycle") or {}),
            rlimits=dict(local.get("rlimits") or {}),
        )


@dataclass
class Tree:
    """The process tree a mechanism works on: its label, run id, its members now, its recorded state."""

    label: str
    run_id: str
    members: Callable[[], list[tuple[int, int]]]
    state: TreeState

    def pids(self) -> list[int]:
        return [pid for pid, _ in self.members()]

    def failed(self, why: str) -> InjectionFailed:
        return InjectionFailed(f"{self.label}: {why}; nothing is left applied")


class Freezer(Protocol):
    """pause / resume. `freeze` verifies every member is stopped and the probe unanswered, or undoes
    itself and raises InjectionFailed; `thaw` is idempotent (None: nothing was frozen)."""

    name: ClassVar[str]

    def frozen(self) -> bool: ...
    def freeze(self, members: list[tuple[int, int]], timeout: float, probe: Probe | None) -> dict[str, Any]: ...
    def thaw(self, timeout: float, probe: Probe | None) -> dict[str, Any] | None: ...


class CpuCap(Protocol):
    """CPU time per period. `cap` reports `quota_us` and `period_us` as read back; `uncap` what the cap did
    while held (`counters` nr_throttled, throttled_time in ns, where seen; None: nothing was capped)."""

    name: ClassVar[str]

    def capped(self) -> bool: ...
    def cap(self, members: list[tuple[int, int]], quota_us: int, period_us: int) -> dict[str, Any]: ...
    def stats(self) -> dict[str, Any]: ...
    def uncap(self, timeout: float) -> dict[str, Any] | None: ...


class MemoryCap(Protocol):
    """Memory. `cap` reports `mem_bytes` as read back; `uncap` the peak and OOM kills where the mechanism can
    see them (`counters` max_usage_in_bytes, oom_kill)."""

    name: ClassVar[str]

    def capped(self) -> bool: ...
    def cap(self, members: list[tuple[int, int]], mem_bytes: int) -> dict[str, Any]: ...
    def uncap(self, timeout: float) -> dict[str, Any] | None: ...


def ask(probe: Probe, timeout: float) -> bool:
    """The probe's answer; a probe that raises did not get one."""
    try:
        return bool(probe(timeout))
    except Exception:
        return False


def unanswered(tree: Tree, probe: Probe | None) -> bool | None:
    """After a freeze: False when the probe got no answer (None: no probe); an answer fails the freeze."""
    if probe is None:
        return None
    if ask(probe, 1.0):
        raise tree.failed("the probe still got an answer from the paused service")
    return False


def answers_again(tree: Tree, probe: Probe | None, timeout: float) -> bool | None:
    """After a thaw: True once the probe answers (None: no probe); RestoreFailed at the deadline."""
    if probe is None:
        return None
    if not wait_until(lambda: ask(probe, 1.0), timeout):
        raise RestoreFailed(f"{tree.label}: resumed, but the probe got no answer within {timeout:g}s")
    return True


def task_states(pid: int) -> list[str]:
    """The state letter of every thread of `pid` (empty if it is gone): a stop or freeze is per thread."""
    states = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return []
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        states.append(text[text.rindex(")") + 2])
    return states


def proc_status(pid: int) -> dict[str, int]:
    """The Vm* sizes of /proc/<pid>/status in bytes (VmSize, VmData, VmRSS, VmHWM, ...); empty if gone."""
    sizes: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return sizes
    for line in text.splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if key.startswith("Vm") and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            sizes[key] = int(parts[0]) * 1024
    return sizes


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


def page_floor(size: int) -> int:
    """A memory limit as the kernel stores it: whole pages, at least one."""
    return max(_PAGE, size // _PAGE * _PAGE)
