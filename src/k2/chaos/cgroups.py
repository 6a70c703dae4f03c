"""cgroup v1 access for the local backend: find hierarchies, make K2's groups, move pids, freeze.

K2's group for a service is `<home>/k2/<run-id>/<service>`, where `<home>` is the cgroup the
service's leader was in when K2 first saw it. Nesting under home (rather than under the root)
keeps whatever limits and accounting the service already had: a child group can only tighten.
Its name is deterministic, so a different process (the watchdog, `k2 chaos recover`) can find
and undo it from the target's description alone.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k2.chaos.errors import InjectionFailed, RestoreFailed, Unsupported
from k2.chaos.targets.base import wait_until

__all__ = ["CPU", "FREEZER", "MEMORY", "Cgroup", "TreeGroups", "cgroup_of", "home_of", "join", "k2_group"]
__all__ += ["leave", "mount_point", "parse_mountinfo", "parse_proc_cgroup", "read_counters"]

log = logging.getLogger(__name__)

FREEZER = "freezer"
CPU = "cpu"
MEMORY = "memory"
K2_DIR = "k2"
MOUNTINFO = Path("/proc/self/mountinfo")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_MEMSW = "memory.memsw.limit_in_bytes"
# Super options of a cgroup v1 mount that are not controllers.
_NOT_CONTROLLERS = frozenset({"rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode", "favordynmods"})


def parse_mountinfo(text: str) -> dict[str, Path]:
    """Map each cgroup v1 controller (and `name=` hierarchy) to its mount point."""
    mounts: dict[str, Path] = {}
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        post_fields = post.split()
        if len(post_fields) < 3 or post_fields[0] != "cgroup":
            continue
        mount_path = Path(pre.split()[4].replace("\\040", " "))
        for option in post_fields[2].split(","):
            if option.startswith("name=") or ("=" not in option and option not in _NOT_CONTROLLERS):
                mounts.setdefault(option, mount_path)
    return mounts


@functools.cache
def _mounts() -> dict[str, Path]:
    try:
        return parse_mountinfo(MOUNTINFO.read_text())
    except OSError:
        return {}


def mount_point(controller: str) -> Path:
    """Where the v1 hierarchy of `controller` is mounted; `Unsupported` if it is not."""
    path = _mounts().get(controller)
    if path is None:
        raise Unsupported(
            f"the cgroup v1 '{controller}' controller is not mounted (this host may be cgroup v2 only): "
            "the local process backend needs cgroup v1 (boot with systemd.unified_cgroup_hierarchy=0), "
            "or use the docker backend"
        )
    if not os.access(path, os.W_OK):
        raise Unsupported(
            f"no write access to {path}: pausing or limiting a local process needs root; "
            "run K2 as root or use the docker backend"
        )
    return path


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Map each v1 controller in a /proc/<pid>/cgroup text to the process's cgroup path."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[1]:
            continue
        for controller in parts[1].split(","):
            paths[controller] = parts[2]
    return paths


def cgroup_of(pid: int, controller: str) -> str | None:
    """The cgroup path (relative to the hierarchy's mount) of `pid`, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return parse_proc_cgroup(text).get(controller)


def k2_group(home: str, run_id: str, name: str) -> str:
    """The path of K2's group for service `name` in run `run_id`, nested under `home`."""
    return f"{home.rstrip('/')}/{K2_DIR}/{run_id}/{name}"


def home_of(path: str, run_id: str, name: str) -> str:
    """Invert `k2_group`: the home of a process found already inside K2's group (else `path`)."""
    suffix = f"/{K2_DIR}/{run_id}/{name}"
    if path.endswith(suffix):
        return path[: -len(suffix)] or "/"
    return path


@dataclass(frozen=True)
class Cgroup:
    """One cgroup directory of a v1 hierarchy; `path` is relative to the mount point ("/a/b")."""

    controller: str
    path: str

    @property
    def directory(self) -> Path:
        return mount_point(self.controller) / self.path.lstrip("/")

    def exists(self) -> bool:
        return self.directory.is_dir()

    def create(self) -> None:
        # A concurrent run may prune an empty shared parent between makedirs' steps: retry once.
        for attempt in range(2):
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                return
            except FileNotFoundError:
                if attempt:
                    raise

    def has(self, key: str) -> bool:
        return (self.directory / key).exists()

    def read(self, key: str) -> str:
        return (self.directory / key).read_text().strip()

    def read_int(self, key: str) -> int:
        return int(self.read(key))

    def write(self, key: str, value: str | int) -> None:
        # One write() call: cgroup files parse each write separately.
        fd = os.open(self.directory / key, os.O_WRONLY)
        try:
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)

    def procs(self) -> list[int]:
        try:
            return [int(line) for line in self.read("cgroup.procs").split()]
        except FileNotFoundError:
            return []

    def attach(self, pid: int) -> bool:
        """Move `pid` (all its threads) here; False if it no longer exists."""
        try:
            self.write("cgroup.procs", pid)
        except ProcessLookupError:
            return False
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                return False
            raise
        return True

    def remove(self, timeout: float = 5.0, *, prune_to: str | None = None) -> bool:
        """rmdir this group (retrying while exiting tasks still pin it), then its empty parents up to
        `prune_to`. Returns False if it still exists at the deadline."""

        def try_rmdir() -> bool:
            try:
                self.directory.rmdir()
            except FileNotFoundError:
                return True
            except OSError as exc:
                if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                    return False
                raise
            return True

        if not wait_until(try_rmdir, timeout):
            return False
        if prune_to is not None:
            parent = self.path.rstrip("/").rsplit("/", 1)[0]
            while parent.startswith(prune_to.rstrip("/") + "/") and f"/{K2_DIR}" in parent:
                try:
                    Cgroup(self.controller, parent).directory.rmdir()
                except OSError:
                    break  # shared with another run or service: leave it
                parent = parent.rsplit("/", 1)[0]
        return True

    def freezer_state(self) -> str:
        # The root group has no freezer.state and can never be frozen.
        return self.read("freezer.state") if self.has("freezer.state") else "THAWED"

    def set_frozen(self, frozen: bool, timeout: float) -> bool:
        """Write FROZEN or THAWED and wait until freezer.state reads it; False at the deadline."""
        want = "FROZEN" if frozen else "THAWED"
        self.write("freezer.state", want)
        # Freezing can stay in FREEZING while a task sits in an uninterruptible kernel path.
        return wait_until(lambda: self.freezer_state() == want, timeout)


def read_counters(group: Cgroup, key: str) -> dict[str, int]:
    """Parse a flat "name value" file such as cpu.stat or memory.oom_control."""
    counters: dict[str, int] = {}
    try:
        text = group.read(key)
    except FileNotFoundError:
        return counters
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            counters[name] = int(value)
    return counters


def join(group: Cgroup, pids: list[int]) -> dict[int, str]:
    """Move `pids` into `group`; return each moved pid's previous cgroup (gone pids are skipped)."""
    previous: dict[int, str] = {}
    for pid in pids:
        before = cgroup_of(pid, group.controller)
        if before is None or before == group.path:
            continue
        if group.attach(pid):
            previous[pid] = before
    return previous


def leave(group: Cgroup, previous: dict[int, str], home: str, timeout: float) -> dict[int, str]:
    """Move every member of `group` back to its previous cgroup (home if unknown, e.g. a child
    born inside, or a journal recovery in another process) and remove the group.

    Returns where each pid went. A previous cgroup that no longer exists falls back to home.
    """
    moved: dict[int, str] = {}
    for _ in range(100):  # members can fork while we move them; stop when the group is empty
        members = group.procs()
        if not members:
            break
        for pid in members:
            dest = previous.get(pid, home)
            if not Cgroup(group.controller, dest).exists():
                dest = home
            if Cgroup(group.controller, dest).attach(pid):
                moved[pid] = dest
    if not group.remove(timeout, prune_to=home):
        log.warning("cgroup %s:%s still busy after %.1fs; left in place", group.controller, group.path, timeout)
    return moved


def _proc_state(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2]


def _rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


def _ask(probe: Callable[[float], bool], timeout: float) -> bool:
    try:
        return bool(probe(timeout))
    except Exception:  # a probe that raises did not get an answer
        return False


class TreeGroups:
    """K2's cgroups for one service's process tree: freeze/thaw and limit/unlimit, each verified.

    The dicts are the target's own (shared, so its `describe()` records them): `home` is
    controller -> the tree's cgroup before K2, `previous` controller -> pid -> cgroup before,
    `prev_values` controller -> the limits in force before (to verify the restore).
    Inject methods undo what they did before raising `InjectionFailed`.
    """

    def __init__(
        self,
        label: str,
        run_id: str,
        members: Callable[[], list[int]],
        home: dict[str, str],
        previous: dict[str, dict[int, str]],
        prev_values: dict[str, dict[str, int]],
    ) -> None:
        self.label, self.run_id = label, run_id
        self.members, self.home, self.previous, self._prev_values = members, home, previous, prev_values

    def group(self, controller: str) -> Cgroup | None:
        home = self.home.get(controller)
        return None if home is None else Cgroup(controller, k2_group(home, self.run_id, self.label))

    def frozen(self) -> bool:
        group = self.group(FREEZER)
        return group is not None and group.exists() and group.freezer_state() != "THAWED"

    def _join_all(self, group: Cgroup, pids: list[int]) -> None:
        self.previous.setdefault(group.controller, {}).update(join(group, pids))

    def _sweep(self, group: Cgroup) -> tuple[list[int], bool]:
        """Move in children forked between the tree walk and the move (a moved parent's later
        children are born inside). Returns the tree and whether any pid was moved. Bounded:
        a fork bomb is not chased forever (the caller finds it outside and fails)."""
        swept = False
        for _ in range(20):
            tree, inside = self.members(), set(group.procs())
            extra = [pid for pid in tree if pid not in inside]
            if not extra:
                return tree, swept
            self._join_all(group, extra)
            swept = True
        return self.members(), swept

    def freeze(self, pids: list[int], timeout: float, probe: Callable[[float], bool] | None) -> dict[str, Any]:
        group = self._need(FREEZER)
        t0 = time.monotonic()
        try:
            group.create()
            self._join_all(group, pids)
            if not group.set_frozen(True, timeout):
                raise self._failed(f"freezer.state is {group.freezer_state()} after {timeout:g}s")
            tree, swept = self._sweep(group)
            if swept and not group.set_frozen(True, timeout):
                raise self._failed(f"freezer.state is {group.freezer_state()} after {timeout:g}s")
            freeze_s = time.monotonic() - t0
            outside = sorted(set(tree) - set(group.procs()))
            if outside:
                raise self._failed(f"pids {outside} of the tree are outside the frozen group")
            # Frozen tasks sit in the refrigerator, which /proc shows as 'D'.
            wait_until(lambda: all(_proc_state(p) in ("D", None) for p in tree), timeout)
            states = {str(p): _proc_state(p) for p in tree}
            if any(s not in ("D", None) for s in states.values()):
                raise self._failed(f"not every pid shows frozen ('D'): {states}")
            answered = None if probe is None else _ask(probe, 1.0)
            if answered:
                raise self._failed("the probe still got an answer from the frozen service")
        except (InjectionFailed, OSError) as exc:
            self.thaw(timeout, None)
            if isinstance(exc, InjectionFailed):
                raise
            raise self._failed(str(exc)) from exc
        measured = {"cgroup": group.path, "freezer_state": group.freezer_state(), "pids": tree}
        return measured | {"freeze_s": round(freeze_s, 6), "states": states, "probe_answered": answered}

    def thaw(self, timeout: float, probe: Callable[[float], bool] | None) -> dict[str, Any] | None:
        group = self.group(FREEZER)
        if group is None or not group.exists():
            return None
        try:
            if not group.set_frozen(False, timeout):
                raise RestoreFailed(
                    f"{self.label}: freezer group {group.path} still {group.freezer_state()} after {timeout:g}s; "
                    f"write THAWED to {group.directory}/freezer.state, then `k2 chaos recover`"
                )
            moved = leave(group, self.previous.pop(FREEZER, {}), self.home[FREEZER], timeout)
        except OSError as exc:
            raise RestoreFailed(f"{self.label}: thawing {group.path} failed: {exc}; run `k2 chaos recover`") from exc
        states = {str(p): Cgroup(FREEZER, dest).freezer_state() for p, dest in moved.items()}
        answered = None
        if probe is not None:
            answered = wait_until(lambda: _ask(probe, 1.0), timeout)
            if not answered:
                raise RestoreFailed(f"{self.label}: thawed, but the probe got no answer within {timeout:g}s")
        return {
            "cgroup": group.path,
            "moved_to": {str(p): d for p, d in moved.items()},
            "freezer_states": states,
            "group_removed": not group.exists(),
            "probe_answered": answered,
        }

    def limit(
        self, pids: list[int], cpu_quota: int | None, period: int, mem: int | None, observe_s: float
    ) -> dict[str, Any]:
        measured: dict[str, Any] = {}
        try:
            if cpu_quota is not None:
                group = self._need(CPU)
                home = Cgroup(CPU, self.home[CPU])
                self._prev_values[CPU] = {k: home.read_int(k) for k in ("cpu.cfs_quota_us", "cpu.cfs_period_us")}
                group.create()
                group.write("cpu.cfs_period_us", period)
                group.write("cpu.cfs_quota_us", cpu_quota)
                self._join_all(group, pids)
                readback = {k: group.read_int(k) for k in ("cpu.cfs_quota_us", "cpu.cfs_period_us")}
                if readback != {"cpu.cfs_quota_us": cpu_quota, "cpu.cfs_period_us": period}:
                    raise self._failed(f"cpu group reads back {readback}, not quota {cpu_quota} / period {period}")
                measured["cpu"] = {"cgroup": group.path, "readback": readback, "previous": self._prev_values[CPU]}
            if mem is not None:
                measured["memory"] = self._limit_memory(pids, mem)
            for controller in measured:
                group = self._need(CPU if controller == "cpu" else MEMORY)
                tree, _ = self._sweep(group)
                outside = sorted(set(tree) - set(group.procs()))
                if outside:
                    raise self._failed(f"pids {outside} are outside the {controller} group")
            if observe_s > 0 and "cpu" in measured:
                time.sleep(observe_s)  # a measurement window, not a synchronisation
                measured["cpu"]["stat"] = read_counters(self._need(CPU), "cpu.stat")
        except (InjectionFailed, OSError) as exc:
            self.unlimit(10.0)
            if isinstance(exc, InjectionFailed):
                raise
            raise self._failed(str(exc)) from exc
        return measured

    def _limit_memory(self, pids: list[int], mem: int) -> dict[str, Any]:
        group = self._need(MEMORY)
        home = Cgroup(MEMORY, self.home[MEMORY])
        keys = ["memory.limit_in_bytes"] + (["memory.memsw.limit_in_bytes"] if home.has(_MEMSW) else [])
        self._prev_values[MEMORY] = {k: home.read_int(k) for k in keys}
        rss = _rss_bytes(pids)
        group.create()
        try:
            group.write("memory.move_charge_at_immigrate", 3)
            charges_moved = True
        except OSError:  # removed in Linux 6.x: pages charged before stay with the previous group
            charges_moved = False
        if not charges_moved and rss > mem:
            raise self._failed(
                f"the tree already uses {rss} bytes > mem_limit {mem}, and this kernel cannot move "
                "memory already charged into a new cgroup, so the limit could not take effect; "
                "give a mem_limit above current usage"
            )
        limit = max(_PAGE, mem // _PAGE * _PAGE)
        for key in keys:  # memsw (memory+swap) must never be below the memory limit: write it last
            group.write(key, limit)
        self._join_all(group, pids)
        readback = {k: group.read_int(k) for k in keys}
        if any(v != limit for v in readback.values()):
            raise self._failed(f"memory group reads back {readback}, not {limit}")
        return {
            "cgroup": group.path,
            "readback": readback,
            "previous": self._prev_values[MEMORY],
            "tree_rss_bytes": rss,
            "charges_moved": charges_moved,
        }

    def unlimit(self, timeout: float) -> dict[str, Any] | None:
        measured: dict[str, Any] = {}
        for controller, keys in ((CPU, ("cpu.stat",)), (MEMORY, ("memory.oom_control",))):
            group = self.group(controller)
            if group is None or not group.exists():
                continue
            try:
                counters = {k: v for key in keys for k, v in read_counters(group, key).items()}
                if controller == MEMORY:
                    counters |= {k: group.read_int(f"memory.{k}") for k in ("max_usage_in_bytes", "failcnt")}
                else:
                    # Lift the quota before moving tasks out: a task moved out of a throttled
                    # group was seen to get no CPU for up to ~0.9 s (Linux 6.18).
                    group.write("cpu.cfs_quota_us", -1)
                moved = leave(group, self.previous.pop(controller, {}), self.home[controller], timeout)
            except OSError as exc:
                raise RestoreFailed(
                    f"{self.label}: removing {controller} limits failed: {exc}; run `k2 chaos recover`"
                ) from exc
            wrong = {p: d for p, d in moved.items() if cgroup_of(p, controller) not in (d, None)}
            if wrong or group.exists():
                raise RestoreFailed(
                    f"{self.label}: pids {sorted(wrong)} not back in their {controller} groups "
                    f"or {group.path} still exists; run `k2 chaos recover`"
                )
            home = Cgroup(controller, self.home[controller])
            before = self._prev_values.pop(controller, None)
            now = {k: home.read_int(k) for k in (before or {})}
            measured[controller] = {
                "counters": counters,
                "moved_to": {str(p): d for p, d in moved.items()},
                "previous": before,
                "now": now,
                "restored": before is None or now == before,
            }
        return measured or None

    def _need(self, controller: str) -> Cgroup:
        mount_point(controller)  # raises Unsupported with the remedy
        group = self.group(controller)
        if group is None:
            raise InjectionFailed(f"{self.label}: its {controller} cgroup is unknown (not running?)")
        return group

    def _failed(self, why: str) -> InjectionFailed:
        return InjectionFailed(f"{self.label}: {why}; nothing is left applied")
