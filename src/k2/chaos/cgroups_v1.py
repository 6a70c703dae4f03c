"""cgroup v1 hierarchies: find them, make K2's groups, move pids, freeze, read counters.

K2's group for a service is `<home>/k2/<run-id>/<service>`, where `<home>` is the cgroup the
service's leader was in when K2 first saw it. Nesting under home (rather than under the root)
keeps whatever limits and accounting the service already had: a child group can only tighten.
Its name is deterministic, so a different process (the watchdog, `k2 chaos recover`) can find
and undo it from the target's description alone. The same naming is used on cgroup v2
(`k2.chaos.cgroups_v2`); what uses these groups for a process tree is `k2.chaos.local`.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from k2.chaos.errors import Unsupported
from k2.chaos.targets.base import wait_until

__all__ = ["CPU", "FREEZER", "K2_DIR", "MEMORY", "Cgroup", "cgroup_of", "home_of", "join", "k2_group"]
__all__ += ["leave", "mount_point", "mounts", "parse_mountinfo", "parse_proc_cgroup", "read_counters"]

log = logging.getLogger(__name__)

FREEZER = "freezer"
CPU = "cpu"
MEMORY = "memory"
K2_DIR = "k2"
MOUNTINFO = Path("/proc/self/mountinfo")
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
def mounts() -> dict[str, Path]:
    """This host's v1 hierarchies (read once: mounts do not change under a run)."""
    try:
        return parse_mountinfo(MOUNTINFO.read_text())
    except OSError:
        return {}


def mount_point(controller: str) -> Path:
    """Where the v1 hierarchy of `controller` is mounted; `Unsupported` if it is not."""
    path = mounts().get(controller)
    if path is None:
        raise Unsupported(
            f"the cgroup v1 '{controller}' controller is not mounted (this host may be cgroup v2 only): "
            "let K2 choose the mechanism (K2_CGROUP=auto, the default: cgroup v2 or signals), "
            "or use the docker backend"
        )
    if not os.access(path, os.W_OK):
        raise Unsupported(
            f"no write access to {path}: the cgroup v1 mechanisms need root; run K2 as root, or let K2 "
            "choose the mechanism (K2_CGROUP=auto, the default: signals and rlimits need no privilege)"
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
