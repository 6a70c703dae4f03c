"""cgroup v2 (the unified hierarchy): find its mount, make K2's groups, move pids, freeze, read counters.

K2's groups are named as on v1 (`<home>/k2/<run-id>/<service>`, see `k2.chaos.cgroups_v1`), nested
under the cgroup the service was in. Unlike v1 there is one hierarchy, so one group serves the
freezer and the limits of a tree, and a controller is usable in a group only when every ancestor
enables it for its children (`cgroup.subtree_control`). K2 writes `subtree_control` only in the
groups it made: a home that does not delegate `cpu` or `memory` to its children is not changed.

Every read and write of the kernel's files goes through `Unified`, one object per mount, so a FAKE
of cgroupfs (a directory tree that emulates what the kernel does, in the tests) can stand in for it
where the kernel binds cpu and memory to v1.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from k2.chaos.cgroups_v1 import K2_DIR, MOUNTINFO
from k2.chaos.targets.base import wait_until

__all__ = ["Cgroup2", "Unified", "parse_unified_mount", "parse_unified_path"]

log = logging.getLogger(__name__)


def parse_unified_mount(text: str) -> Path | None:
    """The mount point of the cgroup2 hierarchy in a /proc/self/mountinfo text (None if not mounted)."""
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        fields = pre.split()
        if sep and post.split()[:1] == ["cgroup2"] and len(fields) > 4:
            return Path(fields[4].replace("\\040", " "))
    return None


def parse_unified_path(text: str) -> str | None:
    """The v2 path ("0::/a/b") in a /proc/<pid>/cgroup text."""
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:] or "/"
    return None


class Unified:
    """One mounted cgroup2 hierarchy. Paths are relative to the mount, as /proc/<pid>/cgroup shows them."""

    def __init__(self, mount: Path) -> None:
        self.mount = mount

    @staticmethod
    @functools.cache
    def find() -> Unified | None:
        """This host's cgroup2 mount (/sys/fs/cgroup on v2 hosts, /sys/fs/cgroup/unified on hybrid ones)."""
        try:
            mount = parse_unified_mount(MOUNTINFO.read_text())
        except OSError:
            return None
        return None if mount is None else Unified(mount)

    def directory(self, path: str) -> Path:
        return self.mount / path.lstrip("/")

    # -- the kernel's side: what a fake cgroupfs overrides --------------------------------------------

    def cgroup_of(self, pid: int) -> str | None:
        """`pid`'s v2 path, or None if it is gone."""
        try:
            return parse_unified_path(Path(f"/proc/{pid}/cgroup").read_text())
        except (FileNotFoundError, ProcessLookupError):
            return None

    def mkdir(self, path: str) -> None:
        # A concurrent run may prune an empty shared parent between makedirs' steps: retry once.
        for attempt in range(2):
            try:
                self.directory(path).mkdir(parents=True, exist_ok=True)
                return
            except FileNotFoundError:
                if attempt:
                    raise

    def rmdir(self, path: str) -> bool:
        """Remove an empty group; False while members or children pin it."""
        try:
            self.directory(path).rmdir()
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                return False
            raise
        return True

    def write(self, path: str, key: str, value: str | int) -> None:
        # One write() call: cgroup files parse each write separately.
        fd = os.open(self.directory(path) / key, os.O_WRONLY)
        try:
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)

    def read(self, path: str, key: str) -> str:
        return (self.directory(path) / key).read_text().strip()

    def has(self, path: str, key: str) -> bool:
        return (self.directory(path) / key).exists()

    def writable(self, path: str) -> bool:
        """Can this process make groups under `path` and move its processes out (root, or delegated to us)?"""
        folder = self.directory(path)
        return os.access(folder, os.W_OK) and os.access(folder / "cgroup.procs", os.W_OK)


@dataclass(frozen=True)
class Cgroup2:
    """One group of a cgroup2 hierarchy."""

    fs: Unified
    path: str

    @property
    def directory(self) -> Path:
        return self.fs.directory(self.path)

    def exists(self) -> bool:
        return self.directory.is_dir()

    def child(self, *names: str) -> Cgroup2:
        return Cgroup2(self.fs, "/".join([self.path.rstrip("/"), *names]))

    def read(self, key: str) -> str:
        return self.fs.read(self.path, key)

    def has(self, key: str) -> bool:
        return self.fs.has(self.path, key)

    def write(self, key: str, value: str | int) -> None:
        self.fs.write(self.path, key, value)

    def words(self, key: str) -> set[str]:
        """A space-separated list file (cgroup.controllers, cgroup.subtree_control); empty if absent."""
        try:
            return set(self.read(key).split())
        except FileNotFoundError:
            return set()

    def counters(self, key: str) -> dict[str, int]:
        """A flat "name value" file (cpu.stat, memory.events, cgroup.events); empty if absent."""
        try:
            text = self.read(key)
        except FileNotFoundError:
            return {}
        return {name: int(value) for name, _, value in (line.partition(" ") for line in text.splitlines())
                if value.strip().lstrip("-").isdigit()}  # fmt: skip

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

    def frozen(self) -> bool:
        return self.counters("cgroup.events").get("frozen") == 1

    def set_frozen(self, frozen: bool, timeout: float) -> bool:
        """Write cgroup.freeze and wait until cgroup.events reads `frozen` accordingly; False at the deadline."""
        self.write("cgroup.freeze", int(frozen))
        # A task in an uninterruptible kernel path freezes only when it leaves it.
        return wait_until(lambda: self.frozen() == frozen, timeout)

    def make(self, below: Cgroup2, controllers: set[str]) -> None:
        """Create this group (and the missing groups between it and `below`, which must exist) with
        `controllers` enabled down to it. Writes subtree_control only in groups under `below`."""
        self.fs.mkdir(self.path)
        if not controllers:
            return
        relative = self.path[len(below.path.rstrip("/")) :].strip("/").split("/")
        group = below
        for name in relative:
            if group is not below:
                missing = controllers - group.words("cgroup.subtree_control")
                if missing:
                    group.write("cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(missing)))
            group = group.child(name)

    def remove(self, timeout: float, *, prune_to: str) -> bool:
        """rmdir this group (retrying while exiting tasks pin it), then K2's empty parents up to
        `prune_to` (never `prune_to` itself). False if it still exists at the deadline."""
        if not wait_until(lambda: self.fs.rmdir(self.path), timeout):
            return False
        parent = self.path.rstrip("/").rsplit("/", 1)[0]
        while parent.startswith(prune_to.rstrip("/") + "/") and f"/{K2_DIR}" in parent:
            if not self.fs.rmdir(parent):
                break  # shared with another run or service: leave it
            parent = parent.rsplit("/", 1)[0]
        return True


def join(group: Cgroup2, pids: list[int]) -> dict[int, str]:
    """Move `pids` into `group`; return each moved pid's previous group (gone pids are skipped)."""
    previous: dict[int, str] = {}
    for pid in pids:
        before = group.fs.cgroup_of(pid)
        if before is None or before == group.path:
            continue
        if group.attach(pid):
            previous[pid] = before
    return previous


def leave(group: Cgroup2, previous: dict[int, str], home: str, timeout: float) -> dict[int, str]:
    """Move every member of `group` back to its previous group (home if unknown or gone) and remove
    the group. Returns where each pid went."""
    moved: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # members can fork while we move them: until the group is empty
        members = group.procs()
        if not members:
            break
        for pid in members:
            dest = Cgroup2(group.fs, previous.get(pid, home))
            if not dest.exists():
                dest = Cgroup2(group.fs, home)
            if dest.attach(pid):
                moved[pid] = dest.path
    if not group.remove(max(1.0, deadline - time.monotonic()), prune_to=home):
        log.warning("cgroup v2 group %s still busy after %.1fs; left in place", group.path, timeout)
    return moved
