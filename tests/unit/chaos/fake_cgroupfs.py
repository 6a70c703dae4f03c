"""A FAKE of the kernel's cgroup2 filesystem, for the v2 limit logic this machine's kernel cannot run.

Here the cpu and memory controllers are bound to cgroup v1, so `cpu.max` and `memory.max` cannot be
exercised on the real unified hierarchy. `FakeCgroupfs` is a plain directory tree shaped like
/sys/fs/cgroup that stands in for `k2.chaos.cgroups_v2.Unified`: it does what the kernel does when K2
makes a group (the interface files of the controllers its parent enables), moves a pid (the
no-internal-process rule, cgroup.procs of both groups), changes subtree_control (+/-, availability,
processes), freezes (cgroup.events), and refuses bad values and busy rmdirs. Processes are fake pids.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from k2.chaos.cgroups_v2 import Unified

PAGE = os.sysconf("SC_PAGE_SIZE")
READ_ONLY = {"cgroup.controllers", "cgroup.events", "cpu.stat", "memory.events", "memory.current", "memory.peak"}
CONTROLLER_FILES = {
    "cpu": {"cpu.max": "max 100000", "cpu.stat": "usage_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0"},
    "memory": {
        "memory.max": "max",
        "memory.swap.max": "max",
        "memory.current": "0",
        "memory.peak": "0",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0",
    },
    "pids": {"pids.max": "max"},
}


class FakeCgroupfs(Unified):
    """A FAKE cgroup2 mount at `root` offering `controllers`, with `enabled` on in the root's subtree_control."""

    def __init__(self, root: Path, controllers: tuple[str, ...] = ("cpu", "memory", "pids"),
                 enabled: tuple[str, ...] = ("cpu", "memory")) -> None:  # fmt: skip
        super().__init__(root)
        self.where: dict[int, str] = {}
        self.refuse_moves: set[int] = set()
        self.writes: list[tuple[str, str, str]] = []
        root.mkdir(parents=True, exist_ok=True)
        self._set("/", "cgroup.controllers", " ".join(controllers))
        self._set("/", "cgroup.subtree_control", " ".join(enabled))
        self._set("/", "cgroup.procs", "")
        self._set("/", "cpu.stat", CONTROLLER_FILES["cpu"]["cpu.stat"])

    # -- test set-up ---------------------------------------------------------------------------------

    def add_group(self, path: str, enable: tuple[str, ...] = ()) -> None:
        """A group of the machine's (not K2's), optionally enabling controllers for its children."""
        self.mkdir(path)
        if enable:
            self._set(path, "cgroup.subtree_control", " ".join(enable))
            for child in self._children(path):
                self._populate(child)

    def add_process(self, pid: int, path: str = "/") -> None:
        self.where[pid] = path
        self._sync_procs()

    def bump(self, path: str, key: str, **counters: int) -> None:
        """What the kernel would count: throttling in cpu.stat, OOM kills in memory.events, ..."""
        values = {n: int(v) for n, _, v in (line.partition(" ") for line in self.read(path, key).splitlines())}
        for name, add in counters.items():
            values[name] = values.get(name, 0) + add
        self._set(path, key, "\n".join(f"{n} {v}" for n, v in values.items()))

    def snapshot(self, path: str) -> dict[str, str]:
        """Every interface file of one group (to show K2 did not change a group it did not make)."""
        folder = self.directory(path)
        return {f.name: f.read_text() for f in sorted(folder.iterdir()) if f.is_file()}

    # -- the kernel's side, as K2 sees it through Unified --------------------------------------------

    def cgroup_of(self, pid: int) -> str | None:
        return self.where.get(pid)

    def mkdir(self, path: str) -> None:
        parts = [p for p in path.strip("/").split("/") if p]
        for i in range(1, len(parts) + 1):
            sub = "/" + "/".join(parts[:i])
            if not self.directory(sub).is_dir():
                self.directory(sub).mkdir()
                self._populate(sub, fresh=True)

    def rmdir(self, path: str) -> bool:
        folder = self.directory(path)
        if not folder.is_dir():
            return True
        if self._children(path) or self._members(path):
            return False
        shutil.rmtree(folder)  # a real rmdir of cgroupfs takes the interface files with it
        return True

    def write(self, path: str, key: str, value: str | int) -> None:
        text = str(value)
        self.writes.append((path, key, text))
        if not self.has(path, key):
            raise FileNotFoundError(errno.ENOENT, f"no {key} in {path} (controller not enabled)")
        if key in READ_ONLY:
            raise PermissionError(errno.EACCES, f"{key} is read-only")
        if key == "cgroup.procs":
            return self._move(int(text), path)
        if key == "cgroup.subtree_control":
            return self._subtree(path, text)
        if key == "cgroup.freeze":
            if text not in ("0", "1"):
                raise OSError(errno.EINVAL, "cgroup.freeze takes 0 or 1")
            self._set(path, key, text)
            self._set(path, "cgroup.events", f"populated {int(bool(self._members(path)))}\nfrozen {text}")
            return None
        if key == "cpu.max":
            return self._set(path, key, _cpu_max(text, self.read(path, key)))
        if key in ("memory.max", "memory.swap.max"):
            return self._set(path, key, _bytes(text, page=key == "memory.max"))
        self._set(path, key, text)
        return None

    def writable(self, path: str) -> bool:
        return self.directory(path).is_dir()

    # -- internals -----------------------------------------------------------------------------------

    def _set(self, path: str, key: str, text: str) -> None:
        (self.directory(path) / key).write_text(text + ("\n" if text else ""))

    def _children(self, path: str) -> list[str]:
        folder = self.directory(path)
        return [f"{path.rstrip('/')}/{d.name}" for d in sorted(folder.iterdir()) if d.is_dir()]

    def _members(self, path: str) -> list[int]:
        return sorted(pid for pid, where in self.where.items() if where == path)

    def _sync_procs(self) -> None:
        for folder in [self.mount, *[p for p in self.mount.rglob("*") if p.is_dir()]]:
            rel = "/" if folder == self.mount else "/" + folder.relative_to(self.mount).as_posix()
            (folder / "cgroup.procs").write_text("".join(f"{p}\n" for p in self._members(rel)))

    def _populate(self, path: str, *, fresh: bool = False) -> None:
        parent = path.rstrip("/").rsplit("/", 1)[0] or "/"
        available = set(self.read(parent, "cgroup.subtree_control").split())
        if fresh:
            for key, text in (("cgroup.subtree_control", ""), ("cgroup.procs", ""), ("cgroup.freeze", "0"),
                              ("cgroup.events", "populated 0\nfrozen 0"), ("cgroup.type", "domain")):  # fmt: skip
                self._set(path, key, text)
        self._set(path, "cgroup.controllers", " ".join(sorted(available)))
        for controller, files in CONTROLLER_FILES.items():
            for key, text in files.items():
                present = self.has(path, key)
                if controller in available and not present:
                    self._set(path, key, text)
                elif controller not in available and present:
                    (self.directory(path) / key).unlink()

    def _move(self, pid: int, path: str) -> None:
        if pid not in self.where:
            raise ProcessLookupError(errno.ESRCH, f"no process {pid}")
        if pid in self.refuse_moves:
            raise PermissionError(errno.EACCES, f"moving {pid} refused")
        if path != "/" and self.read(path, "cgroup.subtree_control"):
            raise OSError(errno.EBUSY, f"{path} enables controllers for its children: no processes allowed there")
        self.where[pid] = path
        self._sync_procs()

    def _subtree(self, path: str, text: str) -> None:
        enabled = set(self.read(path, "cgroup.subtree_control").split())
        available = set(self.read(path, "cgroup.controllers").split())
        for token in text.split():
            sign, controller = token[0], token[1:]
            if sign not in "+-" or controller not in CONTROLLER_FILES:
                raise OSError(errno.EINVAL, f"bad subtree_control token {token!r}")
            if sign == "+":
                if controller not in available:
                    raise FileNotFoundError(errno.ENOENT, f"{controller} not available in {path}")
                if path != "/" and self._members(path):
                    raise OSError(errno.EBUSY, f"{path} has processes of its own")
                enabled.add(controller)
            else:
                if any(controller in self.read(c, "cgroup.subtree_control").split() for c in self._children(path)):
                    raise OSError(errno.EBUSY, f"a child of {path} still enables {controller}")
                enabled.discard(controller)
        self._set(path, "cgroup.subtree_control", " ".join(sorted(enabled)))
        for child in self._children(path):
            self._populate(child)


def _cpu_max(text: str, current: str) -> str:
    parts = text.split()
    if not 1 <= len(parts) <= 2 or not (parts[0] == "max" or parts[0].isdigit()):
        raise OSError(errno.EINVAL, f"cpu.max: bad value {text!r}")
    period = parts[1] if len(parts) == 2 else current.split()[1]
    if not period.isdigit() or not 1000 <= int(period) <= 1_000_000:
        raise OSError(errno.EINVAL, f"cpu.max: bad period {period!r}")
    if parts[0] != "max" and int(parts[0]) < 1000:
        raise OSError(errno.EINVAL, "cpu.max: quota below 1000")
    return f"{parts[0]} {period}"


def _bytes(text: str, *, page: bool) -> str:
    if text == "max":
        return text
    if not text.isdigit():
        raise OSError(errno.EINVAL, f"bad size {text!r}")
    return str(int(text) // PAGE * PAGE if page else int(text))
