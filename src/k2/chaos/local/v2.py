"""cgroup v2 mechanisms: cgroup.freeze, cpu.max, memory.max + memory.swap.max, in one K2 group per tree.

The group is `<home>/k2/<run-id>/<service>` in the unified hierarchy, where home is the tree's own
group. v2 has one hierarchy, so the freezer and both limits share that group: it is left (and the
tree moved back) only once none of them holds. A controller is usable only if home already enables
it for its children; cgroup v2 allows that only in a group without processes of its own (the root
group, or one prepared so), and K2 changes no group it did not make. Otherwise the chooser falls back
to signals and rlimits (`k2.chaos.local.chooser`).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from k2.chaos.cgroupfs import join, k2_group, leave
from k2.chaos.cgroups_v2 import Cgroup2, Unified
from k2.chaos.errors import InjectionFailed, RestoreFailed, Unsupported
from k2.chaos.local.common import CGROUP_V2, Tree, answers_again, page_floor, rss_bytes, task_states, unanswered
from k2.chaos.targets.base import Probe

__all__ = ["HOME", "V2Cpu", "V2Freezer", "V2Memory", "unusable"]

HOME = "cgroup2"  # the key of the tree's v2 group in TreeState.home / previous
DELEGATE_HINT = "systemd-run --user --scope -p Delegate=yes"


def unusable(fs: Unified | None, home: str | None, controller: str | None) -> str | None:
    """Why cgroup v2 cannot freeze (`controller` None) or limit with `controller` a tree whose group is
    `home` (None: it can)."""
    if fs is None:
        return "cgroup v2: no cgroup2 hierarchy is mounted"
    if home is None:
        return "cgroup v2: the tree's group is unknown"
    group = Cgroup2(fs, home)
    if not fs.writable(home):
        return f"cgroup v2: no write access to {group.directory} (needs root, or a subtree delegated to this user)"
    if controller is None:
        if home != "/" and not group.has("cgroup.freeze"):
            return f"cgroup v2: {group.directory} has no cgroup.freeze (the v2 freezer needs Linux 5.2+)"
        return None
    available = group.words("cgroup.controllers")
    if controller not in available:
        return (
            f"cgroup v2: the '{controller}' controller is missing from {group.directory}/cgroup.controllers "
            f"({' '.join(sorted(available)) or 'empty'}; on a hybrid host it is bound to cgroup v1)"
        )
    enabled = group.words("cgroup.subtree_control")
    if controller not in enabled:
        return (
            f"cgroup v2: {group.directory} does not enable '{controller}' for its children (cgroup.subtree_control: "
            f"{' '.join(sorted(enabled)) or 'empty'}); v2 allows that only in a group with no processes of its "
            "own, and K2 changes no group it did not make"
        )
    return None


class _V2:
    """K2's v2 group for a tree, shared by the three mechanisms."""

    name: ClassVar[str] = CGROUP_V2
    controller: ClassVar[str | None] = None

    def __init__(self, tree: Tree, fs: Unified | None = None) -> None:
        self.tree, self.fs = tree, fs if fs is not None else Unified.find()

    def group(self) -> Cgroup2 | None:
        home = self.tree.state.home.get(HOME)
        if home is None or self.fs is None:
            return None
        return Cgroup2(self.fs, k2_group(home, self.tree.run_id, self.tree.label))

    def _need(self) -> Cgroup2:
        why = unusable(self.fs, self.tree.state.home.get(HOME), self.controller)
        if why is not None:
            raise Unsupported(
                f"{self.tree.label}: {why}. Let K2 choose (K2_CGROUP=auto or v2: signals and rlimits take over), "
                f"or run the stack in a cgroup that delegates it ({DELEGATE_HINT} ...)"
            )
        group = self.group()
        assert group is not None  # unusable() checked the mount and the home
        return group

    def _enter(self, group: Cgroup2, members: list[tuple[int, int]]) -> list[int]:
        """Make the group (with this mechanism's controller), move the tree in, sweep in late children."""
        home = Cgroup2(group.fs, self.tree.state.home[HOME])
        group.make(home, {self.controller} if self.controller else set())
        pids = [p for p, _ in members]
        for _ in range(20):  # children forked between the walk and the move; a fork bomb is not chased forever
            self.tree.state.previous.setdefault(HOME, {}).update(join(group, pids))
            inside = set(group.procs())
            pids = self.tree.pids()
            if set(pids) <= inside:
                return pids
        outside = sorted(set(self.tree.pids()) - set(group.procs()))
        raise self.tree.failed(f"pids {outside} of the tree stay outside the cgroup v2 group {group.path}")

    def _release(self, group: Cgroup2, timeout: float) -> dict[str, str]:
        """Move the tree back and remove the group, unless the freezer or a limit still holds in it."""
        if _holds(group):
            return {}
        home = self.tree.state.home[HOME]
        moved = leave(group, self.tree.state.previous.pop(HOME, {}), home, timeout)
        wrong = {p: d for p, d in moved.items() if group.fs.cgroup_of(p) not in (d, None)}
        if wrong or group.exists():
            raise RestoreFailed(
                f"{self.tree.label}: pids {sorted(wrong)} not back in their cgroup v2 groups or {group.path} "
                "still exists; run `k2 chaos recover`"
            )
        return {str(p): d for p, d in moved.items()}

    def _home_values(self, keys: tuple[str, ...]) -> dict[str, str]:
        home = Cgroup2(self.fs, self.tree.state.home[HOME]) if self.fs else None
        return {k: home.read(k) for k in keys if home is not None and home.has(k)}


def _holds(group: Cgroup2) -> bool:
    """Does anything of K2's still hold in the group (the freezer, a cpu or memory limit)?"""
    if not group.exists():
        return False
    values = {k: group.read(k) for k in ("cgroup.freeze", "cpu.max", "memory.max") if group.has(k)}
    return (
        values.get("cgroup.freeze", "0") != "0"
        or values.get("cpu.max", "max").split()[0] != "max"
        or values.get("memory.max", "max") != "max"
    )


class V2Freezer(_V2):
    """cgroup.freeze = 1, verified by cgroup.events `frozen 1`; invisible to the process (it shows 'S')."""

    def frozen(self) -> bool:
        group = self.group()
        if group is None or not group.exists() or not group.has("cgroup.freeze"):
            return False
        return group.read("cgroup.freeze") == "1"

    def freeze(self, members: list[tuple[int, int]], timeout: float, probe: Probe | None) -> dict[str, Any]:
        group = self._need()
        t0 = time.monotonic()
        try:
            tree = self._enter(group, members)
            if not group.set_frozen(True, timeout):
                raise self.tree.failed(f"cgroup.events reads {group.counters('cgroup.events')} after {timeout:g}s")
            outside = sorted(set(self.tree.pids()) - set(group.procs()))
            if outside:
                raise self.tree.failed(f"pids {outside} of the tree are outside the frozen group")
            freeze_s = time.monotonic() - t0
            answered = unanswered(self.tree, probe)
        except (InjectionFailed, OSError) as exc:
            self.thaw(timeout, None)
            if isinstance(exc, InjectionFailed):
                raise
            raise self.tree.failed(str(exc)) from exc
        states = {str(p): "".join(sorted(set(task_states(p)))) or None for p in tree}
        return {
            "mechanism": self.name,
            "cgroup": group.path,
            "freezer_state": "FROZEN",
            "cgroup_events": group.counters("cgroup.events"),
            "pids": tree,
            "states": states,
            "freeze_s": round(freeze_s, 6),
            "probe_answered": answered,
        }

    def thaw(self, timeout: float, probe: Probe | None) -> dict[str, Any] | None:
        group = self.group()
        if group is None or not group.exists() or not group.has("cgroup.freeze"):
            return None
        label = self.tree.label
        try:
            if group.read("cgroup.freeze") == "0" and not group.frozen():
                moved = self._release(group, timeout)  # a freeze that failed half-way may have left the group
                return None if not moved else {"mechanism": self.name, "cgroup": group.path, "moved_to": moved}
            if not group.set_frozen(False, timeout):
                raise RestoreFailed(
                    f"{label}: cgroup v2 group {group.path} still frozen after {timeout:g}s; write 0 to "
                    f"{group.directory}/cgroup.freeze, then `k2 chaos recover`"
                )
            events = group.counters("cgroup.events")
            moved = self._release(group, timeout)
        except OSError as exc:
            raise RestoreFailed(f"{label}: thawing {group.path} failed: {exc}; run `k2 chaos recover`") from exc
        answered = answers_again(self.tree, probe, timeout)
        return {
            "mechanism": self.name,
            "cgroup": group.path,
            "cgroup_events": events,
            "moved_to": moved,
            "group_removed": not group.exists(),
            "probe_answered": answered,
        }


class _V2Cap(_V2):
    """A limit in the shared group: `_apply` writes it, `_lift` writes "max" back; uncap reads counters."""

    keys: ClassVar[tuple[str, ...]]

    def capped(self) -> bool:
        group = self.group()
        return group is not None and group.exists() and self._limited(group)

    def _limited(self, group: Cgroup2) -> bool:
        raise NotImplementedError

    def _lift(self, group: Cgroup2) -> None:
        raise NotImplementedError

    def _counters(self, group: Cgroup2) -> dict[str, int]:
        raise NotImplementedError

    def _cap(self, members: list[tuple[int, int]], values: dict[str, str]) -> dict[str, Any]:
        group = self._need()
        controller = str(self.controller)
        before = self._home_values(self.keys)
        self.tree.state.prev_values[controller] = before
        try:
            home = Cgroup2(group.fs, self.tree.state.home[HOME])
            group.make(home, {controller})
            for key, value in values.items():
                if group.has(key):
                    group.write(key, value)
            readback = {k: group.read(k) for k in values if group.has(k)}
            if readback != {k: v for k, v in values.items() if k in readback} or self.keys[0] not in readback:
                raise self.tree.failed(f"the cgroup v2 group reads back {readback}, not {values}")
            self._enter(group, members)
        except (InjectionFailed, OSError) as exc:
            self._undo(group)
            if isinstance(exc, InjectionFailed):
                raise
            raise self.tree.failed(str(exc)) from exc
        return {"mechanism": self.name, "cgroup": group.path, "readback": readback, "previous": before}

    def _undo(self, group: Cgroup2) -> None:
        """Take back a cap that failed half-way (its limit, then the group unless something else holds)."""
        if group.exists() and self._limited(group):
            self._lift(group)
        self.tree.state.prev_values.pop(str(self.controller), None)
        self._release(group, 10.0)

    def uncap(self, timeout: float) -> dict[str, Any] | None:
        group = self.group()
        if group is None or not group.exists() or not self._limited(group):
            return None
        controller = str(self.controller)
        try:
            counters = self._counters(group)
            self._lift(group)
            moved = self._release(group, timeout)
        except OSError as exc:
            raise RestoreFailed(
                f"{self.tree.label}: removing the cgroup v2 {controller} limit failed: {exc}; run `k2 chaos recover`"
            ) from exc
        before = self.tree.state.prev_values.pop(controller, None)
        now = self._home_values(tuple(before or ()))
        return {
            "mechanism": self.name,
            "counters": counters,
            "moved_to": moved,
            "previous": before,
            "now": now,
            "restored": before is None or now == before,
        }


class V2Cpu(_V2Cap):
    """cpu.max "quota period": the kernel throttles the group once it used its quota in a period."""

    controller = "cpu"
    keys = ("cpu.max",)

    def cap(self, members: list[tuple[int, int]], quota_us: int, period_us: int) -> dict[str, Any]:
        measured = self._cap(members, {"cpu.max": f"{quota_us} {period_us}"})
        quota, period = measured["readback"]["cpu.max"].split()
        return measured | {"quota_us": int(quota), "period_us": int(period)}

    def stats(self) -> dict[str, Any]:
        group = self.group()
        return {} if group is None else _cpu_counters(group)

    def _limited(self, group: Cgroup2) -> bool:
        return group.has("cpu.max") and group.read("cpu.max").split()[0] != "max"

    def _lift(self, group: Cgroup2) -> None:
        # Lifted before the tasks leave, as on v1: a task moved out of a throttled group can starve a while.
        group.write("cpu.max", f"max {group.read('cpu.max').split()[1]}")

    def _counters(self, group: Cgroup2) -> dict[str, int]:
        return _cpu_counters(group)


def _cpu_counters(group: Cgroup2) -> dict[str, int]:
    """cpu.stat, with `throttled_time` in ns as v1 names it (v2 counts µs)."""
    stat = group.counters("cpu.stat")
    if "throttled_usec" in stat:
        stat["throttled_time"] = stat["throttled_usec"] * 1000
    return stat


class V2Memory(_V2Cap):
    """memory.max (and memory.swap.max 0, so no swap): the kernel OOM-kills in the group at the limit,
    counted in memory.events `oom_kill`."""

    controller = "memory"
    keys = ("memory.max", "memory.swap.max")

    def cap(self, members: list[tuple[int, int]], mem_bytes: int) -> dict[str, Any]:
        rss = rss_bytes([p for p, _ in members])
        if rss > mem_bytes:  # v2 never moves memory already charged to another group
            raise self.tree.failed(
                f"the tree already uses {rss} bytes > mem_limit {mem_bytes}, and cgroup v2 does not move memory "
                "already charged into a new group, so the limit could not take effect; give a mem_limit above "
                "current usage"
            )
        measured = self._cap(members, {"memory.max": str(page_floor(mem_bytes)), "memory.swap.max": "0"})
        return measured | {"mem_bytes": int(measured["readback"]["memory.max"]), "tree_rss_bytes": rss,
                           "charges_moved": False}  # fmt: skip

    def _limited(self, group: Cgroup2) -> bool:
        return group.has("memory.max") and group.read("memory.max") != "max"

    def _lift(self, group: Cgroup2) -> None:
        for key in self.keys:
            if group.has(key):
                group.write(key, "max")

    def _counters(self, group: Cgroup2) -> dict[str, int]:
        counters = group.counters("memory.events")
        for key, name in (("memory.peak", "max_usage_in_bytes"), ("memory.current", "usage_in_bytes")):
            if group.has(key):
                counters[name] = int(group.read(key))
        return counters
