"""cgroup v1 mechanisms: the freezer, cpu.cfs_quota_us and memory.limit_in_bytes in K2's groups.

Each works in K2's own group of one v1 hierarchy, nested under the tree's group (`k2.chaos.cgroups_v1`).
Needs root (or a v1 hierarchy this user may write) and the controller mounted.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from k2.chaos.cgroups_v1 import CPU as CPU_CONTROLLER
from k2.chaos.cgroups_v1 import FREEZER, Cgroup, cgroup_of, join, k2_group, leave, mount_point, mounts
from k2.chaos.cgroups_v1 import MEMORY as MEMORY_CONTROLLER
from k2.chaos.errors import InjectionFailed, RestoreFailed
from k2.chaos.local.common import CGROUP_V1, Tree, answers_again, page_floor, rss_bytes, task_states, unanswered
from k2.chaos.targets.base import Probe, wait_until

__all__ = ["V1Cpu", "V1Freezer", "V1Memory", "unusable"]

_MEMSW = "memory.memsw.limit_in_bytes"
_CPU_KEYS = ("cpu.cfs_quota_us", "cpu.cfs_period_us")


def unusable(controller: str, home: str | None) -> str | None:
    """Why the v1 `controller` cannot serve a tree whose group is `home` (None: it can)."""
    mount = mounts().get(controller)
    if mount is None:
        return f"cgroup v1: the '{controller}' controller is not mounted"
    if home is None:
        return f"cgroup v1: the tree's '{controller}' group is unknown"
    folder = mount / home.lstrip("/")
    if not (os.access(folder, os.W_OK) and os.access(folder / "cgroup.procs", os.W_OK)):
        return f"cgroup v1: no write access to {folder} (needs root)"
    return None


class _V1:
    """K2's group of one v1 controller for a tree."""

    controller: ClassVar[str]
    name: ClassVar[str] = CGROUP_V1

    def __init__(self, tree: Tree) -> None:
        self.tree = tree

    def group(self) -> Cgroup | None:
        home = self.tree.state.home.get(self.controller)
        return None if home is None else Cgroup(self.controller, k2_group(home, self.tree.run_id, self.tree.label))

    def _need(self) -> Cgroup:
        mount_point(self.controller)  # raises Unsupported with the remedy
        group = self.group()
        if group is None:
            raise InjectionFailed(f"{self.tree.label}: its {self.controller} cgroup is unknown (not running?)")
        return group

    def _join(self, group: Cgroup, pids: list[int]) -> None:
        self.tree.state.previous.setdefault(self.controller, {}).update(join(group, pids))

    def _sweep(self, group: Cgroup) -> tuple[list[int], bool]:
        """Move in children forked between the tree walk and the move (a moved parent's later children
        are born inside). Returns the tree and whether any pid was moved. Bounded: a fork bomb is not
        chased forever (the caller finds it outside and fails)."""
        swept = False
        for _ in range(20):
            tree, inside = self.tree.pids(), set(group.procs())
            extra = [pid for pid in tree if pid not in inside]
            if not extra:
                return tree, swept
            self._join(group, extra)
            swept = True
        return self.tree.pids(), swept

    def _check_inside(self, group: Cgroup) -> list[int]:
        tree, _ = self._sweep(group)
        outside = sorted(set(tree) - set(group.procs()))
        if outside:
            raise self.tree.failed(f"pids {outside} are outside the {self.controller} group")
        return tree

    def _leave(self, group: Cgroup, timeout: float) -> dict[int, str]:
        home = self.tree.state.home[self.controller]
        return leave(group, self.tree.state.previous.pop(self.controller, {}), home, timeout)


class V1Freezer(_V1):
    """FROZEN in the v1 freezer (what `docker pause` uses on v1 hosts); invisible to the process."""

    controller = FREEZER

    def frozen(self) -> bool:
        group = self.group()
        return group is not None and group.exists() and group.freezer_state() != "THAWED"

    def freeze(self, members: list[tuple[int, int]], timeout: float, probe: Probe | None) -> dict[str, Any]:
        group = self._need()
        t0 = time.monotonic()
        try:
            group.create()
            self._join(group, [p for p, _ in members])
            if not group.set_frozen(True, timeout):
                raise self.tree.failed(f"freezer.state is {group.freezer_state()} after {timeout:g}s")
            tree, swept = self._sweep(group)
            if swept and not group.set_frozen(True, timeout):
                raise self.tree.failed(f"freezer.state is {group.freezer_state()} after {timeout:g}s")
            freeze_s = time.monotonic() - t0
            outside = sorted(set(tree) - set(group.procs()))
            if outside:
                raise self.tree.failed(f"pids {outside} of the tree are outside the frozen group")
            # Frozen tasks sit in the refrigerator, which /proc shows as 'D'.
            wait_until(lambda: all(set(task_states(p)) <= {"D"} for p in tree), timeout)
            states = {str(p): "".join(sorted(set(task_states(p)))) or None for p in tree}
            if any(s not in ("D", None) for s in states.values()):
                raise self.tree.failed(f"not every thread shows frozen ('D'): {states}")
            answered = unanswered(self.tree, probe)
        except (InjectionFailed, OSError) as exc:
            self.thaw(timeout, None)
            if isinstance(exc, InjectionFailed):
                raise
            raise self.tree.failed(str(exc)) from exc
        measured = {"cgroup": group.path, "freezer_state": group.freezer_state(), "pids": tree}
        return measured | {"freeze_s": round(freeze_s, 6), "states": states, "probe_answered": answered}

    def thaw(self, timeout: float, probe: Probe | None) -> dict[str, Any] | None:
        group = self.group()
        if group is None or not group.exists():
            return None
        label = self.tree.label
        try:
            if not group.set_frozen(False, timeout):
                raise RestoreFailed(
                    f"{label}: freezer group {group.path} still {group.freezer_state()} after {timeout:g}s; "
                    f"write THAWED to {group.directory}/freezer.state, then `k2 chaos recover`"
                )
            moved = self._leave(group, timeout)
        except OSError as exc:
            raise RestoreFailed(f"{label}: thawing {group.path} failed: {exc}; run `k2 chaos recover`") from exc
        states = {str(p): Cgroup(FREEZER, dest).freezer_state() for p, dest in moved.items()}
        answered = answers_again(self.tree, probe, timeout)
        return {
            "cgroup": group.path,
            "moved_to": {str(p): d for p, d in moved.items()},
            "freezer_states": states,
            "group_removed": not group.exists(),
            "probe_answered": answered,
        }


class _V1Cap(_V1):
    """A limit in K2's group of one controller: set, join, verify; uncap reads the counters, leaves, verifies
    the tree's previous group still has the limits it had."""

    counter_files: ClassVar[tuple[str, ...]]

    def capped(self) -> bool:
        group = self.group()
        return group is not None and group.exists()

    def _remember(self, keys: list[str] | tuple[str, ...]) -> dict[str, int]:
        home = Cgroup(self.controller, self.tree.state.home[self.controller])
        before = {k: home.read_int(k) for k in keys}
        self.tree.state.prev_values[self.controller] = before
        return before

    def _counters(self, group: Cgroup) -> dict[str, int]:
        return {k: v for key in self.counter_files for k, v in group.counters(key).items()}

    def _before_leaving(self, group: Cgroup) -> None:
        """Hook: what to do to the group before its tasks are moved out."""

    def uncap(self, timeout: float) -> dict[str, Any] | None:
        group = self.group()
        if group is None or not group.exists():
            return None
        label, controller = self.tree.label, self.controller
        try:
            counters = self._counters(group)
            self._before_leaving(group)
            moved = self._leave(group, timeout)
        except OSError as exc:
            raise RestoreFailed(f"{label}: removing {controller} limits failed: {exc}; run `k2 chaos recover`") from exc
        wrong = {p: d for p, d in moved.items() if cgroup_of(p, controller) not in (d, None)}
        if wrong or group.exists():
            raise RestoreFailed(
                f"{label}: pids {sorted(wrong)} not back in their {controller} groups "
                f"or {group.path} still exists; run `k2 chaos recover`"
            )
        home = Cgroup(controller, self.tree.state.home[controller])
        before = self.tree.state.prev_values.pop(controller, None)
        now = {k: home.read_int(k) for k in (before or {})}
        return {
            "mechanism": self.name,
            "counters": counters,
            "moved_to": {str(p): d for p, d in moved.items()},
            "previous": before,
            "now": now,
            "restored": before is None or now == before,
        }


class V1Cpu(_V1Cap):
    """cpu.cfs_quota_us / cpu.cfs_period_us: the kernel throttles the group once it used its quota."""

    controller = CPU_CONTROLLER
    counter_files = ("cpu.stat",)

    def cap(self, members: list[tuple[int, int]], quota_us: int, period_us: int) -> dict[str, Any]:
        group = self._need()
        before = self._remember(_CPU_KEYS)
        group.create()
        group.write("cpu.cfs_period_us", period_us)
        group.write("cpu.cfs_quota_us", quota_us)
        self._join(group, [p for p, _ in members])
        readback = {k: group.read_int(k) for k in _CPU_KEYS}
        if readback != {"cpu.cfs_quota_us": quota_us, "cpu.cfs_period_us": period_us}:
            raise self.tree.failed(f"cpu group reads back {readback}, not quota {quota_us} / period {period_us}")
        self._check_inside(group)
        return {"mechanism": self.name, "quota_us": quota_us, "period_us": period_us, "cgroup": group.path,
                "readback": readback, "previous": before}  # fmt: skip

    def stats(self) -> dict[str, Any]:
        group = self.group()
        return {} if group is None else group.counters("cpu.stat")

    def _before_leaving(self, group: Cgroup) -> None:
        # Lift the quota before moving tasks out: a task moved out of a throttled group was seen to
        # get no CPU for up to ~0.9 s (Linux 6.18).
        group.write("cpu.cfs_quota_us", -1)


class V1Memory(_V1Cap):
    """memory.limit_in_bytes (and memsw, so no swap): the kernel OOM-kills in the group at the limit."""

    controller = MEMORY_CONTROLLER
    counter_files = ("memory.oom_control",)

    def cap(self, members: list[tuple[int, int]], mem_bytes: int) -> dict[str, Any]:
        group = self._need()
        home = Cgroup(MEMORY_CONTROLLER, self.tree.state.home[MEMORY_CONTROLLER])
        keys = ["memory.limit_in_bytes"] + ([_MEMSW] if home.has(_MEMSW) else [])
        before = self._remember(keys)
        pids = [p for p, _ in members]
        rss = rss_bytes(pids)
        group.create()
        try:
            group.write("memory.move_charge_at_immigrate", 3)
            charges_moved = True
        except OSError:  # removed in Linux 6.x: pages charged before stay with the previous group
            charges_moved = False
        if not charges_moved and rss > mem_bytes:
            raise self.tree.failed(
                f"the tree already uses {rss} bytes > mem_limit {mem_bytes}, and this kernel cannot move "
                "memory already charged into a new cgroup, so the limit could not take effect; "
                "give a mem_limit above current usage"
            )
        limit = page_floor(mem_bytes)
        for key in keys:  # memsw (memory+swap) must never be below the memory limit: write it last
            group.write(key, limit)
        self._join(group, pids)
        readback = {k: group.read_int(k) for k in keys}
        if any(v != limit for v in readback.values()):
            raise self.tree.failed(f"memory group reads back {readback}, not {limit}")
        self._check_inside(group)
        return {
            "mechanism": self.name,
            "mem_bytes": limit,
            "cgroup": group.path,
            "readback": readback,
            "previous": before,
            "tree_rss_bytes": rss,
            "charges_moved": charges_moved,
        }

    def _counters(self, group: Cgroup) -> dict[str, int]:
        counters = super()._counters(group)
        return counters | {k: group.read_int(f"memory.{k}") for k in ("max_usage_in_bytes", "failcnt")}
