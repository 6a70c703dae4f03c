"""cgroup v2 (the unified hierarchy): find its mount, make K2's groups, move pids, freeze, read counters.

K2's groups are named and nested as on v1 (`<home>/k2/<run-id>/<service>`, see `k2.chaos.cgroupfs`).
Unlike v1 there is one hierarchy, so one group serves the freezer and the limits of a tree, and a
controller is usable in a group only when every ancestor enables it for its children
(`cgroup.subtree_control`). K2 writes `subtree_control` only in the groups it made: a home that does not
delegate `cpu` or `memory` to its children is not changed.

Every read and write of the kernel's files goes through `Unified`, one object per mount, so a FAKE of
cgroupfs (a directory tree that emulates what the kernel does, in the tests) can stand in for it where
the kernel binds cpu and memory to v1.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from k2.chaos.cgroupfs import Group, make_dirs, remove_dir, write_file
from k2.chaos.cgroups_v1 import MOUNTINFO
from k2.chaos.targets.base import wait_until

__all__ = ["Cgroup2", "Unified", "parse_unified_mount", "parse_unified_path"]


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
        make_dirs(self.directory(path))

    def rmdir(self, path: str) -> bool:
        """Remove an empty group; False while members or children pin it."""
        return remove_dir(self.directory(path))

    def write(self, path: str, key: str, value: str | int) -> None:
        write_file(self.directory(path) / key, value)

    def read(self, path: str, key: str) -> str:
        return (self.directory(path) / key).read_text().strip()

    def has(self, path: str, key: str) -> bool:
        return (self.directory(path) / key).exists()

    def writable(self, path: str) -> bool:
        """Can this process make groups under `path` and move its processes out (root, or delegated to us)?"""
        folder = self.directory(path)
        return os.access(folder, os.W_OK) and os.access(folder / "cgroup.procs", os.W_OK)


@dataclass(frozen=True)
class Cgroup2(Group):
    """One group of a cgroup2 hierarchy."""

    fs: Unified
    path: str

    def at(self, path: str) -> Self:
        return type(self)(self.fs, path)

    def where(self, pid: int) -> str | None:
        return self.fs.cgroup_of(pid)

    def rmdir(self) -> bool:
        return self.fs.rmdir(self.path)

    @property
    def directory(self) -> Path:
        return self.fs.directory(self.path)

    def exists(self) -> bool:
        return self.directory.is_dir()

    def child(self, *names: str) -> Cgroup2:
        return self.at("/".join([self.path.rstrip("/"), *names]))

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
