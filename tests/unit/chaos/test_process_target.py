"""ProcessTarget without long-running services: spec validation, pid-reuse guard, /proc parsing,
and that invalid parameters raise before anything is touched."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from k2.chaos.cgroups_v1 import CPU, FREEZER, MEMORY, Cgroup, cgroup_of, k2_group
from k2.chaos.errors import InjectionFailed, InvalidFault, RestoreFailed, UnsafeTarget, Unsupported
from k2.chaos.targets import Target, target_from_description
from k2.chaos.targets.base import wait_until
from k2.chaos.targets.process import ProcessSpec, ProcessTarget, is_alive, proc_stat, process_tree, send_signal

TREE = "import os, time\nif os.fork() == 0:\n    time.sleep(60)\nelse:\n    time.sleep(60)\n"


class Spawned:
    """Processes a test starts (each in its own session); all SIGKILLed in teardown."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.run_id = f"unit-{uuid.uuid4().hex[:8]}"

    def python(self, code: str, *, ready: bool = False) -> subprocess.Popen[bytes]:
        """Start `code`; with `ready`, wait (10 s at most) until it prints its first line."""
        out = subprocess.PIPE if ready else None
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, start_new_session=True)
        self.procs.append(proc)
        if ready:
            assert proc.stdout is not None
            assert select.select([proc.stdout], [], [], 10.0)[0], "child did not get ready in 10 s"
            assert proc.stdout.readline()
        return proc

    def target(self, proc: subprocess.Popen[bytes], **spec: object) -> ProcessTarget:
        return ProcessTarget(ProcessSpec.for_pid("svc", proc.pid, run_id=self.run_id, **spec))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session and group: the whole tree
            proc.wait(10)


@pytest.fixture
def spawned() -> Iterator[Spawned]:
    s = Spawned()
    yield s
    s.close()


def test_proc_stat_survives_odd_command_names(spawned: Spawned) -> None:
    proc = spawned.python("open('/proc/self/comm', 'w').write('a) b (c'); import time; time.sleep(60)")
    assert wait_until(lambda: "a) b (c" in Path(f"/proc/{proc.pid}/comm").read_text(), 5.0)
    st = proc_stat(proc.pid)
    assert st is not None and st.ppid == os.getpid() and st.session == proc.pid and st.state in "RS"
    assert proc_stat(999_999_999) is None


def test_process_tree_finds_children_and_guards_identity(spawned: Spawned) -> None:
    proc = spawned.python(TREE)
    st = proc_stat(proc.pid)
    assert st is not None
    assert wait_until(lambda: len(process_tree(proc.pid, st.starttime)) == 2, 5.0)
    assert process_tree(proc.pid, st.starttime)[0] == (proc.pid, st.starttime)
    assert process_tree(proc.pid, st.starttime + 1) == []  # another process under that pid
    assert not send_signal(proc.pid, st.starttime + 1, signal.SIGKILL)
    assert is_alive(proc.pid, st.starttime)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"name": "../etc"}, "name="),
        ({"pid": -1}, "pid="),
        ({"starttime": "x"}, "starttime="),
        ({"stop_signal": "SIGFOO"}, "not a known signal"),
        ({"stop_signal": "SIGSTOP"}, "does not end a process"),
        ({"restart_argv": "k2 stack start"}, "list of strings"),
        ({"restart_argv": None}, "list of strings"),
        ({"state_file": 5}, "state_file="),
        ({"run_id": "a/b"}, "run_id="),
        ({"stop_timeout": -1}, "negative"),
        ({"colour": "red"}, "unknown field"),
    ],
)
def test_spec_validation(change: dict[str, object], match: str) -> None:
    spec = {"name": "kafka", "pid": 1, "starttime": 1, **change}
    with pytest.raises(InvalidFault, match=match):
        ProcessSpec.from_dict(spec)


def test_spec_round_trips_through_json() -> None:
    spec = ProcessSpec.from_dict(
        {"name": "postgres", "pid": 10, "starttime": 20, "stop_signal": "int", "restart_argv": ["k2", "x"]}
    )
    assert spec.stop_signal == "SIGINT" and spec.run_id
    assert ProcessSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_pid_reuse_is_refused(spawned: Spawned) -> None:
    proc = spawned.python("import time; time.sleep(60)")
    st = proc_stat(proc.pid)
    assert st is not None
    with pytest.raises(UnsafeTarget, match="another process"):
        ProcessTarget({"name": "svc", "pid": proc.pid, "starttime": st.starttime - 1})
    assert proc.poll() is None


def test_description_round_trip_and_reused_pid_means_not_running(spawned: Spawned) -> None:
    proc = spawned.python("import time; time.sleep(60)")
    target = spawned.target(proc)
    assert isinstance(target, Target)
    desc = json.loads(json.dumps(target.describe()))
    again = target_from_description(desc)
    assert isinstance(again, ProcessTarget) and again.running and again.describe() == target.describe()
    desc["spec"]["starttime"] -= 1  # as if the pid now belonged to someone else
    stale = target_from_description(desc)
    assert not stale.running and stale.members() == []


def _untouched(target: ProcessTarget, proc: subprocess.Popen[bytes], homes: dict[str, str | None]) -> None:
    assert proc.poll() is None
    for controller in (FREEZER, CPU, MEMORY):
        assert cgroup_of(proc.pid, controller) == homes[controller]
        home = homes[controller]
        assert home is not None and not Cgroup(controller, k2_group(home, target.spec.run_id, "svc")).exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cpu_quota": -5}, "negative"),
        ({"cpu_quota": 500}, "minimum"),
        ({"cpu_quota": 100_000 * ((os.cpu_count() or 1) + 1)}, "exceeds"),
        ({"cpu_quota": 20_000.5}, "whole number"),
        ({"cpu_quota": 20_000, "cpu_period": 10}, "cpu_period"),
        ({"mem_limit": "abc"}, "not a size"),
        ({"mem_limit": "0"}, "minimum"),
        ({"mem_limit": "-5m"}, "negative"),
        ({"mem_limit": "100k"}, "minimum"),
        ({"mem_limit": "900p"}, "maximum"),
        ({"mem_limit": "100t"}, "machine's"),
        ({}, "give cpu_quota"),
    ],
)
def test_invalid_limits_touch_nothing(spawned: Spawned, kwargs: dict[str, object], match: str) -> None:
    proc = spawned.python("import time; time.sleep(60)")
    target = spawned.target(proc)
    homes = {c: cgroup_of(proc.pid, c) for c in (FREEZER, CPU, MEMORY)}
    with pytest.raises(InvalidFault, match=match):
        target.limit(**kwargs)  # type: ignore[arg-type]
    _untouched(target, proc, homes)


def test_inverses_are_noops_when_nothing_is_applied(spawned: Spawned) -> None:
    proc = spawned.python("import time; time.sleep(60)")
    target = spawned.target(proc)
    for effect in (target.resume(), target.unlimit(), target.start()):
        assert effect.changed is False
    assert target.start().already_running is True


def test_start_adopts_a_running_pid_from_pid_source_or_pid_file(spawned: Spawned, tmp_path: Path) -> None:
    dead = spawned.python("pass")
    st = proc_stat(dead.pid)
    dead.wait(10)
    live = spawned.python("import time; time.sleep(60)")
    spec = {"name": "svc", "pid": dead.pid, "starttime": st.starttime if st else 1}
    by_callable = ProcessTarget(spec, pid_source=lambda: (live.pid, None))
    assert by_callable.start().already_running is True and by_callable.pid == live.pid
    pid_file = tmp_path / "svc.pid"
    pid_file.write_text(f"{live.pid}\n")
    by_file = ProcessTarget({**spec, "pid_file": str(pid_file)})
    assert by_file.start().changed is False and by_file.running and by_file.pid == live.pid


def test_start_uses_the_owners_restarter_in_process_not_restart_argv(spawned: Spawned, tmp_path: Path) -> None:
    """The runner restarts through the stack it holds; restart_argv is what the watchdog and recover run."""
    dead = spawned.python("pass")
    st = proc_stat(dead.pid)
    dead.wait(10)
    argv_ran = tmp_path / "restart-argv-ran"
    argv = [sys.executable, "-c", f"open({str(argv_ran)!r}, 'w')"]
    spec = {"name": "svc", "pid": dead.pid, "starttime": st.starttime if st else 1,
            "pid_file": str(tmp_path / "svc.pid"), "restart_argv": argv}  # fmt: skip
    started: list[int] = []

    def restart() -> None:
        started.append(spawned.python("import time; time.sleep(60)").pid)
        (tmp_path / "svc.pid").write_text(f"{started[-1]}\n")

    target = ProcessTarget(spec, restarter=restart)
    effect = target.start()
    assert target.running and [target.pid] == started == [effect.pid] and effect.detail["in_process"] is True
    assert not argv_ran.exists()

    def broken() -> None:
        raise OSError("port 9092 is in use")

    failing = ProcessTarget({**spec, "pid_file": str(tmp_path / "none.pid")}, restarter=broken)
    with pytest.raises(RestoreFailed, match="port 9092 is in use.*by hand"):
        failing.start()
    assert not argv_ran.exists()


def test_dead_target_cannot_be_faulted_or_restarted_without_argv(spawned: Spawned) -> None:
    proc = spawned.python("pass")
    target = spawned.target(proc) if proc_stat(proc.pid) else None
    proc.wait(10)
    if target is None:
        pytest.skip("the process exited before its start time could be read")
    assert not target.running
    for primitive in (target.stop, target.kill, target.pause):
        with pytest.raises(InjectionFailed, match="not running"):
            primitive()
    with pytest.raises(InjectionFailed, match="not running"):
        target.limit(cpu_quota=20_000)
    with pytest.raises(Unsupported, match="restart_argv"):
        target.start()


def test_stop_signal_then_escalation(spawned: Spawned) -> None:
    stubborn = spawned.python(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ok', flush=True)\ntime.sleep(60)",
        ready=True,
    )
    target = spawned.target(stubborn)
    effect = target.stop(timeout=0.3)
    assert effect.escalated is True and effect.detail["sigkilled"] == [stubborn.pid]
    assert stubborn.wait(5) == -signal.SIGKILL

    polite = spawned.python(
        "import time\nprint('ok', flush=True)\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    pass\n",
        ready=True,
    )
    target = spawned.target(polite, stop_signal="SIGINT")
    effect = target.stop(timeout=5.0)
    assert effect.signal == "SIGINT" and effect.escalated is False and effect.gone
    assert not target.running
