"""Memory cap without a cgroup: a lower soft RLIMIT_AS or RLIMIT_DATA on every process of the tree (prlimit).

An rlimit is not a cgroup limit, and K2 says so in the effect: it bounds what each process may map, not
what the tree keeps resident; it holds per process, not for the tree; an allocation past it fails with
ENOMEM (most programs then abort, some cope) instead of the OOM killer ending the process; and it cannot
take back memory already mapped. So K2 uses it only where it means something: RLIMIT_AS when every
process maps less than the limit (then it caps all of its memory), else RLIMIT_DATA when every process's
private writable memory is below it (runtimes such as Go reserve far more address space than they use),
else it refuses with `Unsupported` naming the process and its size. Only the soft limit is lowered (the
hard one is kept), so any user can put it back; the limits before are recorded in the tree's state as
soon as the target is described (before injection), so a recovery in another process restores them.
"""

from __future__ import annotations

import resource
from typing import Any, ClassVar

from k2.chaos.errors import InjectionFailed, RestoreFailed, Unsupported
from k2.chaos.local.common import RLIMIT, Tree, proc_status
from k2.chaos.procfs import is_alive

__all__ = ["RESOURCES", "RlimitMemory"]

# name -> (resource, the /proc/<pid>/status size it bounds)
RESOURCES: dict[str, tuple[int, str]] = {"RLIMIT_AS": (resource.RLIMIT_AS, "VmSize"),
                                         "RLIMIT_DATA": (resource.RLIMIT_DATA, "VmData")}  # fmt: skip
WHAT_IT_DOES = (
    "per process; an allocation past it fails with ENOMEM (the process usually aborts) rather than being "
    "OOM-killed; resident memory is not what is counted"
)


def _get(pid: int, name: str) -> tuple[int, int]:
    return resource.prlimit(pid, RESOURCES[name][0])


class RlimitMemory:
    name: ClassVar[str] = RLIMIT

    def __init__(self, tree: Tree) -> None:
        self.tree = tree

    def capped(self) -> bool:
        return bool(self.tree.state.rlimits.get("resource"))

    def snapshot(self) -> None:
        """Record each member's limits as they are now, unless K2's cap holds (then they are K2's)."""
        if self.capped():
            return
        before: dict[str, Any] = {}
        for pid, start in self.tree.members():
            try:
                before[str(pid)] = {"starttime": start, **{n: list(_get(pid, n)) for n in RESOURCES}}
            except (ProcessLookupError, PermissionError):
                continue
        self.tree.state.rlimits = {"before": before} if before else {}

    def cap(self, members: list[tuple[int, int]], mem_bytes: int) -> dict[str, Any]:
        sizes = {pid: proc_status(pid) for pid, _ in members}
        chosen = next((n for n, (_, size) in RESOURCES.items()
                       if all(s.get(size, 0) < mem_bytes for s in sizes.values())), None)  # fmt: skip
        if chosen is None:
            pid, status = max(sizes.items(), key=lambda item: item[1].get("VmData", 0))
            raise Unsupported(
                f"{self.tree.label}: pid {pid} already maps {status.get('VmData', 0)} bytes of private memory "
                f"(VmData; {status.get('VmSize', 0)} in all) > mem_limit {mem_bytes}: an rlimit cannot take back "
                "memory already mapped, it would only make every later allocation fail at once. Give a "
                "mem_limit above that, or run K2 where it can use a memory cgroup (root on cgroup v1, or a "
                "cgroup v2 group delegating 'memory')"
            )
        self.snapshot()
        before = self.tree.state.rlimits["before"]
        self.tree.state.rlimits.update(resource=chosen, value=mem_bytes)
        readback: dict[str, int] = {}
        try:
            for pid, start in members:
                entry = before.get(str(pid))
                if entry is None or not is_alive(pid, start):
                    continue  # exited since the walk
                hard = entry[chosen][1]
                soft = mem_bytes if hard == resource.RLIM_INFINITY else min(mem_bytes, hard)
                # prlimit takes a pid, not a pidfd: checked just before (a reuse in between is a microsecond race).
                resource.prlimit(pid, RESOURCES[chosen][0], (soft, hard))
                readback[str(pid)] = _get(pid, chosen)[0]
                if readback[str(pid)] != soft:
                    raise self.tree.failed(f"pid {pid} reads back {chosen} {readback[str(pid)]}, not {soft}")
        except PermissionError as exc:
            self.uncap(5.0)
            why = f"this user may not change the limits of the tree ({exc}): run K2 as its owner"
            raise self.tree.failed(why) from exc
        except ProcessLookupError:
            pass  # it exited: nothing to limit
        except InjectionFailed:
            self.uncap(5.0)
            raise
        return {
            "mechanism": self.name,
            "mem_bytes": min(readback.values(), default=None),
            "resource": chosen,
            "readback": readback,
            "sizes": {str(p): {k: s.get(k) for k in ("VmSize", "VmData", "VmRSS")} for p, s in sizes.items()},
            "scope": WHAT_IT_DOES,
        }

    def uncap(self, timeout: float) -> dict[str, Any] | None:
        state = self.tree.state.rlimits
        before: dict[str, Any] = state.get("before", {})
        if not before:
            return None
        # Unknown resource (recovering from a description written before the cap landed): check both.
        names = [state["resource"]] if state.get("resource") else list(RESOURCES)
        leader = before.get(str(self.tree.members()[0][0])) if self.tree.members() else None
        recorded = [(int(p), e["starttime"]) for p, e in before.items()]
        restored: dict[str, dict[str, int]] = {}
        peak, gone = 0, []
        for pid, start in dict.fromkeys(recorded + self.tree.members()):
            if not is_alive(pid, start):
                gone.append(pid)
                continue
            entry = before.get(str(pid)) if before.get(str(pid), {}).get("starttime") == start else leader
            if entry is None:
                continue
            peak = max(peak, proc_status(pid).get("VmHWM", 0))
            for name in names:
                want = entry[name][0]
                try:
                    soft, hard = _get(pid, name)
                    if soft != want:
                        resource.prlimit(pid, RESOURCES[name][0], (want, hard))
                        restored.setdefault(str(pid), {})[name] = want
                    if _get(pid, name)[0] != want:
                        raise RestoreFailed(f"{self.tree.label}: pid {pid} keeps {name} {soft}; `prlimit` it back")
                except ProcessLookupError:
                    continue
                except (PermissionError, ValueError) as exc:
                    raise RestoreFailed(
                        f"{self.tree.label}: cannot restore {name} of pid {pid} to {want}: {exc}; run `k2 chaos "
                        "recover` as the tree's owner or root"
                    ) from exc
        changed = bool(state.get("resource")) or bool(restored)
        self.tree.state.rlimits = {}
        if not changed:
            return None
        return {
            "mechanism": self.name,
            "resource": state.get("resource"),
            "restored_limits": restored,
            "restored": True,
            "exited_under_limit": sorted(p for p, _ in recorded if p in gone),
            "counters": {"max_usage_in_bytes": peak},  # VmHWM: the peak resident size of the process's life
        }
