"""cgroup v1 hierarchies: find them, make K2's groups, move pids, freeze, read counters.

One hierarchy per controller. K2's groups are named and nested as `k2.chaos.cgroupfs` says; what uses
them for a process tree is `k2.chaos.local`, and the docker backend reads containers' groups here.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from k2.chaos.cgroupfs import K2_DIR, Group, home_of, join, k2_group, leave, make_dirs, remove_dir, write_file
from k2.chaos.errors import Unsupported
from k2.chaos.targets.base import wait_until

__all__ = ["CPU", "FREEZER", "K2_DIR", "MEMORY", "Cgroup", "cgroup_of", "home_of", "join", "k2_group"]
__all__ += ["leave", "mount_point", "mounts", "parse_mountinfo", "parse_proc_cgroup", "read_counters"]

FREEZER = "freezer"
CPU = "cpu"
MEMORY = "memory"
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


@dataclass(frozen=True)
class Cgroup(Group):
    """One cgroup directory of a v1 hierarchy; `path` is relative to the mount point ("/a/b")."""

    controller: str
    path: str

    def at(self, path: str) -> Self:
        return type(self)(self.controller, path)

    def where(self, pid: int) -> str | None:
        return cgroup_of(pid, self.controller)

    @property
    def directory(self) -> Path:
        return mount_point(self.controller) / self.path.lstrip("/")

    def exists(self) -> bool:
        return self.directory.is_dir()

    def create(self) -> None:
        make_dirs(self.directory)

    def has(self, key: str) -> bool:
        return (self.directory / key).exists()

    def read(self, key: str) -> str:
        return (self.directory / key).read_text().strip()

    def read_int(self, key: str) -> int:
        return int(self.read(key))

    def write(self, key: str, value: str | int) -> None:
        write_file(self.directory / key, value)

    def rmdir(self) -> bool:
        return remove_dir(self.directory)

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
    return group.counters(key)
