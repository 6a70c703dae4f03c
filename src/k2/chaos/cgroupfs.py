"""What a cgroup v1 group and a cgroup v2 group share: K2's naming, cgroup.procs, moving pids in and out,
flat counter files, and removal with K2's empty parents.

K2's group for a service is `<home>/k2/<run-id>/<service>`, where `<home>` is the group the service's
leader was in when K2 first saw it. Nesting under home (rather than under the root) keeps whatever limits
and accounting the service already had: a child group can only tighten. The name is deterministic, so
another process (the watchdog, `k2 chaos recover`) can find and undo it from the target's description.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path
from typing import Self

from k2.chaos.targets.base import wait_until

__all__ = ["K2_DIR", "Group", "home_of", "join", "k2_group", "leave", "make_dirs", "remove_dir", "write_file"]

log = logging.getLogger(__name__)

K2_DIR = "k2"


def k2_group(home: str, run_id: str, name: str) -> str:
    """The path of K2's group for service `name` in run `run_id`, nested under `home`."""
    return f"{home.rstrip('/')}/{K2_DIR}/{run_id}/{name}"


def home_of(path: str, run_id: str, name: str) -> str:
    """Invert `k2_group`: the home of a process found already inside K2's group (else `path`)."""
    suffix = f"/{K2_DIR}/{run_id}/{name}"
    if path.endswith(suffix):
        return path[: -len(suffix)] or "/"
    return path


def write_file(path: Path, value: str | int) -> None:
    """One write() call: cgroup files parse each write separately."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    # A concurrent run may prune an empty shared parent between makedirs' steps: retry once.
    for attempt in range(2):
        try:
            path.mkdir(parents=True, exist_ok=True)
            return
        except FileNotFoundError:
            if attempt:
                raise


def remove_dir(path: Path) -> bool:
    """rmdir a group; False while members or children pin it (gone counts as removed)."""
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return False
        raise
    return True


class Group:
    """One group of a hierarchy; `path` is relative to its mount ("/a/b"). Subclasses say how its files are
    read and written, where another group of the same hierarchy is, and where a pid is."""

    path: str

    def read(self, key: str) -> str:
        raise NotImplementedError

    def write(self, key: str, value: str | int) -> None:
        raise NotImplementedError

    def exists(self) -> bool:
        raise NotImplementedError

    def at(self, path: str) -> Self:
        """Another group of the same hierarchy."""
        raise NotImplementedError

    def where(self, pid: int) -> str | None:
        """`pid`'s group in this hierarchy, or None if it is gone."""
        raise NotImplementedError

    def rmdir(self) -> bool:
        """Remove the group if empty; False while members or children pin it (gone counts as removed)."""
        raise NotImplementedError

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

    def counters(self, key: str) -> dict[str, int]:
        """A flat "name value" file (cpu.stat, memory.oom_control, memory.events, cgroup.events); {} if absent."""
        try:
            text = self.read(key)
        except FileNotFoundError:
            return {}
        return {name: int(value) for name, _, value in (line.partition(" ") for line in text.splitlines())
                if value.strip().lstrip("-").isdigit()}  # fmt: skip

    def remove(self, timeout: float = 5.0, *, prune_to: str | None = None) -> bool:
        """rmdir this group (retrying while exiting tasks still pin it), then K2's empty parents up to
        `prune_to` (never `prune_to` itself). False if it still exists at the deadline."""
        if not wait_until(self.rmdir, timeout):
            return False
        if prune_to is not None:
            parent = self.path.rstrip("/").rsplit("/", 1)[0]
            while parent.startswith(prune_to.rstrip("/") + "/") and f"/{K2_DIR}" in parent:
                if not self.at(parent).rmdir():
                    break  # shared with another run or service: leave it
                parent = parent.rsplit("/", 1)[0]
        return True


def join(group: Group, pids: list[int]) -> dict[int, str]:
    """Move `pids` into `group`; return each moved pid's previous group (gone pids are skipped)."""
    previous: dict[int, str] = {}
    for pid in pids:
        before = group.where(pid)
        if before is None or before == group.path:
            continue
        if group.attach(pid):
            previous[pid] = before
    return previous


def leave(group: Group, previous: dict[int, str], home: str, timeout: float) -> dict[int, str]:
    """Move every member of `group` back to its previous group (home if unknown, e.g. a child born inside,
    or a recovery in another process, or if that group is gone) and remove the group. Returns where each
    pid went."""
    moved: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # members can fork while we move them: until the group is empty
        members = group.procs()
        if not members:
            break
        for pid in members:
            dest = group.at(previous.get(pid, home))
            if not dest.exists():
                dest = group.at(home)
            if dest.attach(pid):
                moved[pid] = dest.path
    if not group.remove(max(1.0, deadline - time.monotonic()), prune_to=home):
        log.warning("cgroup %s still busy after %.1fs; left in place", group, timeout)
    return moved
