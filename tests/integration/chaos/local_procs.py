"""What the local fault tests share: `Procs` (every process a test starts, and teardown that leaves
nothing frozen, stopped, limited or running), a `Service` with a real request/response probe, the CPU
share of a tree, and running K2 as another user.

Teardown thaws and removes this run's K2 groups in every v1 hierarchy and in the unified one, ends any
duty-cycle loop, SIGCONTs and SIGKILLs every process session it started or adopted.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from tests import host

from k2.chaos.cgroupfs import leave
from k2.chaos.cgroups_v1 import CPU, FREEZER, MEMORY, Cgroup, cgroup_of
from k2.chaos.cgroups_v2 import Cgroup2, Unified
from k2.chaos.local.dutycycle import tree_cpu_ns
from k2.chaos.procfs import is_alive, proc_stat, send_signal
from k2.chaos.targets.base import wait_until
from k2.chaos.targets.process import ProcessSpec, ProcessTarget

__all__ = ["SERVICE", "Procs", "Service", "cpu_share", "mechanisms", "tree_share"]

TICKS = os.sysconf("SC_CLK_TCK")


class Procs:
    """Everything a test starts; teardown dissolves this run's K2 groups and SIGKILLs it all."""

    def __init__(self) -> None:
        self.run_id = f"it-{uuid.uuid4().hex[:8]}"
        self.popens: list[subprocess.Popen[bytes]] = []
        self.adopted: list[tuple[int, int]] = []
        self.dirs: list[Path] = []
        self.delegated: list[Cgroup2] = []  # v2 groups a test made for another user, removed last

    def python(self, code: str, *, pipes: bool = False, user: str | None = None, env: dict[str, str] | None = None,
               args: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:  # fmt: skip
        """Run `code` in its own session, as `user` (default: this user) with K2 importable."""
        pipe = subprocess.PIPE if pipes else None
        python, extra, cwd, who = sys.executable, {}, None, {}
        if user is not None:
            python, extra, cwd = host.SYSTEM_PYTHON, {"PYTHONPATH": str(self.k2_copy())}, str(self.workdir(user))
            who = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}
        proc = subprocess.Popen(
            [python, "-c", textwrap.dedent(code), *args], stdin=pipe, stdout=pipe, start_new_session=True,
            env={**os.environ, **(env or {}), **extra}, cwd=cwd, **who,
        )  # fmt: skip
        self.popens.append(proc)
        return proc

    def k2_copy(self) -> Path:
        """K2 (and rich, for its CLI) copied where another user can read them: this checkout and its venv may
        sit under a directory only root can enter."""
        if not hasattr(self, "_k2_copy"):
            import rich

            import k2

            root = Path(tempfile.mkdtemp(prefix="k2-other-user-"))
            root.chmod(0o755)
            self.dirs.append(root)
            for package in (k2, rich):
                source = Path(package.__file__).parent  # type: ignore[arg-type]
                shutil.copytree(source, root / source.name, ignore=shutil.ignore_patterns("__pycache__"))
            for path in [root, *root.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)
            self._k2_copy = root
        return self._k2_copy

    def workdir(self, user: str) -> Path:
        """A private directory `user` owns (for its journal and logs)."""
        path = Path(tempfile.mkdtemp(prefix="k2-user-dir-"))
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        self.dirs.append(path)
        return path

    def adopt(self, pid: int) -> None:
        st = proc_stat(pid)
        if st is not None:
            self.adopted.append((pid, st.starttime))

    def target(self, pid: int, **spec: object) -> ProcessTarget:
        return ProcessTarget(ProcessSpec.for_pid("svc", pid, run_id=self.run_id, **spec))

    def cleanup(self) -> None:
        for controller in (FREEZER, CPU, MEMORY):
            home = cgroup_of(os.getpid(), controller) or "/"
            run_dir = Cgroup(controller, f"{home.rstrip('/')}/k2/{self.run_id}")
            if not run_dir.exists():
                continue
            for sub in run_dir.directory.iterdir():
                if sub.is_dir():
                    group = Cgroup(controller, f"{run_dir.path}/{sub.name}")
                    if controller == FREEZER:
                        group.set_frozen(False, 5.0)
                    leave(group, {}, home, 5.0)
        self._cleanup_v2()
        for pid, start in self.adopted:
            send_signal(pid, start, signal.SIGCONT)
            send_signal(pid, start, signal.SIGKILL)
        for proc in self.popens:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.popens:
            proc.wait(10)
        assert wait_until(lambda: not any(is_alive(p, s) for p, s in self.adopted), 10.0)
        for group in self.delegated:
            leave(group, {}, "/", 10.0)
        for path in self.dirs:
            shutil.rmtree(path, ignore_errors=True)

    def _cleanup_v2(self) -> None:
        fs = Unified.find()
        if fs is None:
            return
        for run_dir in fs.mount.glob(f"**/k2/{self.run_id}"):
            rel = run_dir.parent.parent.relative_to(fs.mount).as_posix()
            home = "/" if rel == "." else f"/{rel}"
            for sub in [d for d in run_dir.iterdir() if d.is_dir()]:
                group = Cgroup2(fs, "/" + sub.relative_to(fs.mount).as_posix())
                group.set_frozen(False, 5.0)
                leave(group, {}, home, 5.0)


def mechanisms(effect: dict[str, Any]) -> dict[str, str]:
    """The mechanisms an effect's JSON names (Frozen/Thawed: `mechanism`; Limited/Unlimited: cpu_/mem_)."""
    named = {"freeze": effect.get("mechanism"), "cpu": effect.get("cpu_mechanism"),
             "memory": effect.get("mem_mechanism")}  # fmt: skip
    return {key: value for key, value in named.items() if value}


def cpu_share(pid: int, window: float) -> float:
    """Cores used by `pid` over `window` seconds, from utime+stime in /proc/<pid>/stat."""

    def ticks() -> int:
        st = proc_stat(pid)
        assert st is not None
        return st.utime + st.stime

    before, t0 = ticks(), time.monotonic()
    time.sleep(window)  # a measurement window, not a synchronisation
    return (ticks() - before) / TICKS / (time.monotonic() - t0)


def tree_share(target: ProcessTarget, window: float) -> float:
    """Cores used by the target's whole tree over `window` seconds, from the processes' CPU clocks (ns)."""
    before, t0 = tree_cpu_ns(target.members()), time.monotonic_ns()
    time.sleep(window)  # a measurement window, not a synchronisation
    return (tree_cpu_ns(target.members()) - before) / (time.monotonic_ns() - t0)


SERVICE = """
    import os, select, time
    if os.fork() == 0:  # a child, so the test shows the whole tree freezes
        while True:
            time.sleep(0.01)
    i = 0
    while True:
        i += 1
        out = f"c {i}\\n"
        if select.select([0], [], [], 0.01)[0]:
            data = os.read(0, 4096)
            if not data:
                break
            out += "".join(f"p {n}\\n" for n in data.decode().split())
        os.write(1, out.encode())
"""


class Service:
    """A child that writes a counter and echoes pings: `probe` is a real request/response check."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc, self.count, self.pongs = proc, 0, set[str]()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            kind, _, value = line.decode().partition(" ")
            if kind == "c":
                self.count = int(value)
            else:
                self.pongs.add(value.strip())

    def probe(self, timeout: float) -> bool:
        nonce = uuid.uuid4().hex
        assert self.proc.stdin is not None
        self.proc.stdin.write(nonce.encode() + b"\n")
        self.proc.stdin.flush()
        return wait_until(lambda: nonce in self.pongs, timeout)
