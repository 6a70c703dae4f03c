"""`LocalFaults`: pause and limit one local process tree with the mechanisms this host allows.

What `ProcessTarget` calls. It learns the tree's groups, has the chooser pick a mechanism per
capability, records the choice in the tree's state (so the journal keeps it before any injection),
and runs the mechanism; every measured effect names the mechanism and, for a fallback, why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from k2.chaos.cgroups_v1 import CPU as CPU_CONTROLLER
from k2.chaos.cgroups_v1 import FREEZER, cgroup_of, home_of
from k2.chaos.cgroups_v1 import MEMORY as MEMORY_CONTROLLER
from k2.chaos.cgroups_v2 import Unified
from k2.chaos.errors import InjectionFailed, RestoreFailed, Unsupported
from k2.chaos.local.chooser import choose, policy_from_env
from k2.chaos.local.common import (
    CGROUP_V1,
    CGROUP_V2,
    CPU,
    DUTY_CYCLE,
    FREEZE,
    MEMORY,
    RLIMIT,
    SIGSTOP,
    CpuCap,
    Freezer,
    MemoryCap,
    Tree,
    TreeState,
)
from k2.chaos.local.dutycycle import DutyCycleCpu, tree_cpu_ns
from k2.chaos.local.rlimit import RlimitMemory
from k2.chaos.local.sigstop import SigstopFreezer
from k2.chaos.local.v1 import V1Cpu, V1Freezer, V1Memory
from k2.chaos.local.v2 import HOME, V2Cpu, V2Freezer, V2Memory
from k2.chaos.targets.base import Probe

__all__ = ["OLD_DESCRIPTIONS", "LocalFaults"]

M = TypeVar("M")

# A description written before K2 chose mechanisms was made with cgroup v1 for everything.
OLD_DESCRIPTIONS = {"mechanisms": {FREEZE: CGROUP_V1, CPU: CGROUP_V1, MEMORY: CGROUP_V1}}

_FREEZERS: dict[str, Callable[..., Freezer]] = {CGROUP_V1: V1Freezer, CGROUP_V2: V2Freezer, SIGSTOP: SigstopFreezer}
_CPU_CAPS: dict[str, Callable[..., CpuCap]] = {CGROUP_V1: V1Cpu, CGROUP_V2: V2Cpu, DUTY_CYCLE: DutyCycleCpu}
_MEMORY_CAPS: dict[str, Callable[..., MemoryCap]] = {CGROUP_V1: V1Memory, CGROUP_V2: V2Memory, RLIMIT: RlimitMemory}


class LocalFaults:
    """Freeze / limit for one tree. `state` is the target's own (its describe() records it);
    `policy` overrides K2_CGROUP; `unified` stands in for this host's cgroup2 mount (a fake, in tests)."""

    def __init__(
        self,
        label: str,
        run_id: str,
        members: Callable[[], list[tuple[int, int]]],
        state: TreeState,
        *,
        policy: str | None = None,
        unified: Unified | None = None,
    ) -> None:
        self.tree = Tree(label, run_id, members, state)
        self.policy = policy
        self.unified = unified if unified is not None else Unified.find()
        self._made: dict[tuple[str, str], object] = {}

    @property
    def state(self) -> TreeState:
        return self.tree.state

    def learn_home(self, pid: int) -> None:
        """Record the groups `pid` is in now (once per controller), as K2's groups' home."""
        home = self.state.home
        label, run_id = self.tree.label, self.tree.run_id
        for controller in (FREEZER, CPU_CONTROLLER, MEMORY_CONTROLLER):
            path = cgroup_of(pid, controller)
            if path is not None and controller not in home:
                home[controller] = home_of(path, run_id, label)
        path = self.unified.cgroup_of(pid) if self.unified is not None else None
        if path is not None and HOME not in home:
            home[HOME] = home_of(path, run_id, label)

    def choose(self) -> dict[str, str]:
        """Pick (once, while the tree runs) the mechanism for each capability; returns them."""
        missing = [c for c in (FREEZE, CPU, MEMORY) if c not in self.state.mechanisms]
        if missing and self.tree.members():
            policy = self.policy or policy_from_env()
            v1_home = {c: p for c, p in self.state.home.items() if c != HOME}
            for capability in missing:
                got = choose(capability, policy, v1_home=v1_home, v2_home=self.state.home.get(HOME),
                             unified=self.unified)  # fmt: skip
                self.state.mechanisms[capability] = got.mechanism
                if got.why:
                    self.state.why[capability] = got.why
        return dict(self.state.mechanisms)

    def describe(self) -> dict[str, Any]:
        """The state's "local" part, with the choice made and, for an rlimit cap, the limits before it."""
        self.choose()
        memory = self._memory() if self.state.mechanisms.get(MEMORY) == RLIMIT else None
        if isinstance(memory, RlimitMemory):
            memory.snapshot()
        return self.state.local()

    def _make(self, capability: str, table: dict[str, Callable[..., M]]) -> M:
        """The chosen mechanism for `capability`, one instance per target (a loop process lives in one)."""
        self.choose()
        name = self.state.mechanisms.get(capability, CGROUP_V1)
        key = (capability, name)
        if key not in self._made:
            factory = table[name]
            self._made[key] = factory(self.tree, self.unified) if name == CGROUP_V2 else factory(self.tree)
        return cast(M, self._made[key])

    def _freezer(self) -> Freezer:
        return self._make(FREEZE, _FREEZERS)

    def _cpu(self) -> CpuCap:
        return self._make(CPU, _CPU_CAPS)

    def _memory(self) -> MemoryCap:
        return self._make(MEMORY, _MEMORY_CAPS)

    def _named(self, capability: str, measured: dict[str, Any], name: str) -> dict[str, Any]:
        measured["mechanism"] = name
        if self.state.why.get(capability):
            measured["mechanism_why"] = self.state.why[capability]
        return measured

    # -- freeze ----------------------------------------------------------------------------------------

    def frozen(self) -> bool:
        return self._freezer().frozen()

    def freeze(self, members: list[tuple[int, int]], timeout: float, probe: Probe | None) -> dict[str, Any]:
        freezer = self._freezer()
        cpu = self._cpu()
        if freezer.name == SIGSTOP and cpu.name == DUTY_CYCLE and cpu.capped():
            raise InjectionFailed(
                f"{self.tree.label}: its CPU is capped by duty-cycled SIGSTOP, which would resume a SIGSTOP pause "
                "every period: lift the CPU cap first, or use a cgroup mechanism for one of the two"
            )
        return self._named(FREEZE, freezer.freeze(members, timeout, probe), freezer.name)

    def thaw(self, timeout: float, probe: Probe | None) -> dict[str, Any] | None:
        freezer = self._freezer()
        measured = freezer.thaw(timeout, probe)
        return None if measured is None else measured | {"mechanism": freezer.name}

    # -- limits ----------------------------------------------------------------------------------------

    def limit(
        self, members: list[tuple[int, int]], cpu_quota: int | None, period: int, mem: int | None, observe_s: float
    ) -> dict[str, Any]:
        """Apply the CPU and/or memory cap; on any failure undo both before raising. A cap already held is
        refused before anything is touched (a second duty-cycle loop would fight the first)."""
        held = [name for name, want, cap in ((CPU, cpu_quota, self._cpu()), (MEMORY, mem, self._memory()))
                if want is not None and cap.capped()]  # fmt: skip
        if held:
            what = " and ".join(held)
            raise InjectionFailed(
                f"{self.tree.label}: its {what} already capped by run {self.tree.run_id}; unlimit it first"
            )
        measured: dict[str, Any] = {}
        try:
            if cpu_quota is not None:
                cpu = self._cpu()
                measured["cpu"] = self._named(CPU, cpu.cap(members, cpu_quota, period), cpu.name)
            if mem is not None:
                memory = self._memory()
                measured["memory"] = self._named(MEMORY, memory.cap(members, mem), memory.name)
            if observe_s > 0 and "cpu" in measured:
                measured["cpu"] |= self._observe(observe_s)
        except (InjectionFailed, Unsupported, OSError) as exc:
            self.unlimit(10.0)
            if isinstance(exc, OSError):
                raise self.tree.failed(str(exc)) from exc
            raise
        return measured

    def _observe(self, seconds: float) -> dict[str, Any]:
        """The tree's CPU share over a window (cores), and the mechanism's counters after it."""
        before, t0 = tree_cpu_ns(self.tree.members()), time.monotonic_ns()
        time.sleep(seconds)  # a measurement window, not a synchronisation
        share = (tree_cpu_ns(self.tree.members()) - before) / max(1, time.monotonic_ns() - t0)
        return {"stat": self._cpu().stats(), "cpu_share": round(share, 4)}

    def unlimit(self, timeout: float) -> dict[str, Any] | None:
        """Lift both caps (each idempotent); a failure of one still lets the other be lifted, then raises."""
        measured, failure = {}, None
        for key, cap in ((CPU, self._cpu()), (MEMORY, self._memory())):
            try:
                undone = cap.uncap(timeout)
            except RestoreFailed as exc:
                failure = failure or exc
                continue
            if undone is not None:
                measured[key] = undone | {"mechanism": cap.name}
        if failure is not None:
            raise failure
        return measured or None
