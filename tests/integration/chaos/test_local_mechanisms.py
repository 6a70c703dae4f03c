"""The local mechanisms for real on this machine kind (hybrid cgroups, root available):

- the cgroup v2 freezer on the unified hierarchy, with the v1 freezer untouched;
- without cgroups: SIGSTOP pause, duty-cycle CPU cap, rlimit memory cap, as root and as `nobody`;
- the runner SIGKILLed mid-fault (the watchdog restores), and without a watchdog (the duty-cycle loop dies
  with the runner and leaves its target running; `k2 chaos recover` resets the rest);
- a cgroup v2 subtree delegated to `nobody` the way systemd delegates one (chown of the group and its
  cgroup.procs/subtree_control/threads); systemd itself is not on this machine.

The cgroup v2 cpu.max / memory.max logic runs against a fake cgroupfs (tests/unit/chaos/test_cgroups_v2.py):
this kernel binds cpu and memory to v1. Timing assertions state their tolerance.
"""

from __future__ import annotations

import json
import os
import pwd
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests import host
from tests.integration.chaos.local_procs import SERVICE, Procs, Service, mechanisms, tree_share

from k2.chaos.cgroups_v1 import FREEZER, Cgroup, cgroup_of
from k2.chaos.cgroups_v2 import Cgroup2, Unified
from k2.chaos.errors import Unsupported
from k2.chaos.journal import read_entries
from k2.chaos.local.dutycycle import TOLERANCE
from k2.chaos.local.sigstop import stopped
from k2.chaos.procfs import is_alive, proc_stat, process_tree
from k2.chaos.targets.base import wait_until
from k2.chaos.watchdog import default_log_path

pytestmark = pytest.mark.integration

BUSY_TREE = "import os\nif os.fork() == 0:\n    while True: pass\nwhile True: pass\n"


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    yield p
    p.cleanup()


def rlimit(pid: int, name: str) -> str:
    """The soft limit /proc/<pid>/limits shows for `name` ("Max address space", "Max data size")."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith(name):
            return line[len(name) :].split()[0]
    raise AssertionError(f"no {name!r} in /proc/{pid}/limits")


def read_json_line(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    assert select.select([proc.stdout], [], [], timeout)[0], f"no answer within {timeout:g}s"
    line = proc.stdout.readline()
    assert line, "the process ended without answering"
    answer: dict[str, Any] = json.loads(line)
    return answer


def service_tree(pid: int) -> list[tuple[int, int]]:
    st = proc_stat(pid)
    return [] if st is None else process_tree(pid, st.starttime)


def running(tree: list[tuple[int, int]]) -> bool:
    return all(is_alive(*m) and not stopped(m[0]) for m in tree)


# -- the cgroup v2 freezer, for real -------------------------------------------------------------------


@host.v2_freezer
def test_v2_freezer_freezes_the_tree_and_leaves_the_v1_freezer_alone(
    procs: Procs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K2_CGROUP", "v2")
    svc = Service(procs.python(SERVICE, pipes=True))
    assert wait_until(lambda: svc.count > 5, 10.0) and svc.probe(5.0)
    target = procs.target(svc.proc.pid)
    assert wait_until(lambda: len(target.members()) == 2, 5.0)
    pids = sorted(p for p, _ in target.members())
    fs = Unified.find()
    assert fs is not None
    v2_home, v1_before = fs.cgroup_of(pids[0]), {p: cgroup_of(p, FREEZER) for p in pids}

    effect = target.pause(probe=svc.probe)
    measured = effect.detail
    assert effect.frozen and effect.mechanism == "cgroup-v2" and effect.answered is False
    assert measured["cgroup_events"]["frozen"] == 1 and "by cgroup-v2" in effect.summary()
    group = Cgroup2(fs, measured["cgroup"])
    assert group.read("cgroup.freeze") == "1" and sorted(group.procs()) == pids
    assert "T" not in "".join(measured["states"].values())  # invisible to the tree, unlike SIGSTOP
    frozen_at = svc.count
    assert not wait_until(lambda: svc.count > frozen_at, 0.5), "the counter advanced while frozen"
    # The v1 freezer was not touched: same v1 groups, no K2 group there.
    assert {p: cgroup_of(p, FREEZER) for p in pids} == v1_before
    v1_home = v1_before[pids[0]] or "/"
    assert not Cgroup(FREEZER, f"{v1_home.rstrip('/')}/k2/{procs.run_id}").exists()

    restored = target.resume(probe=svc.probe)
    assert restored.mechanism == "cgroup-v2" and restored.answered is True
    assert restored.detail["group_removed"] is True and not group.exists()
    assert wait_until(lambda: svc.count > frozen_at + 5, 5.0), "the counter did not continue after resume"
    assert all(fs.cgroup_of(p) == v2_home for p in pids)


# -- the fallbacks, as root ----------------------------------------------------------------------------


def test_sigstop_pause_stops_every_thread_and_the_parent_can_see_it(
    procs: Procs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K2_CGROUP", "none")
    svc = Service(procs.python(SERVICE, pipes=True))
    assert wait_until(lambda: svc.count > 5, 10.0) and svc.probe(5.0)
    target = procs.target(svc.proc.pid)
    assert wait_until(lambda: len(target.members()) == 2, 5.0)

    effect = target.pause(probe=svc.probe)
    measured = effect.detail
    assert effect.frozen and effect.mechanism == "sigstop" and effect.answered is False
    assert measured["mechanism_why"] == "K2_CGROUP=none" and "can observe" in measured["observable"]
    assert set(measured["states"].values()) == {"T"} and len(measured["states"]) == 2
    frozen_at = svc.count
    assert not wait_until(lambda: svc.count > frozen_at, 0.5), "the counter advanced while stopped"
    # Unlike the freezer, the tree can tell: its parent (this test) is told the child stopped.
    seen = os.waitid(os.P_PID, svc.proc.pid, os.WSTOPPED | os.WNOHANG | os.WNOWAIT)
    assert seen is not None and seen.si_code == os.CLD_STOPPED

    restored = target.resume(probe=svc.probe)
    assert restored.mechanism == "sigstop" and restored.answered is True
    seen = os.waitid(os.P_PID, svc.proc.pid, os.WCONTINUED | os.WNOHANG | os.WNOWAIT)
    assert seen is not None and seen.si_code == os.CLD_CONTINUED
    assert wait_until(lambda: svc.count > frozen_at + 5, 5.0), "the counter did not continue after resume"
    assert running(target.members())
    assert target.resume().changed is False


def test_duty_cycle_holds_a_busy_tree_to_its_quota_within_tolerance(
    procs: Procs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K2_CGROUP", "none")
    target = procs.target(procs.python(BUSY_TREE).pid)
    assert wait_until(lambda: len(target.members()) == 2, 5.0)
    baseline = tree_share(target, 1.0)

    effect = target.limit(cpu_quota=30_000)
    cpu = effect.detail["cpu"]
    assert effect.cpu_mechanism == "duty-cycle" and cpu["cap_share"] == 0.3 and cpu["tolerance"] == TOLERANCE
    assert (effect.cpu_quota_us, effect.cpu_period_us) == (30_000, 100_000)
    assert cpu["pids"] == sorted(p for p, _ in target.members())
    loop = (cpu["loop_pid"], proc_stat(cpu["loop_pid"]).starttime)  # type: ignore[union-attr]
    procs.adopted.append(loop)
    limited = tree_share(target, 3.0)
    # 30% of a core for the whole tree, + TOLERANCE (5 points: the loop polls down to ~1 ms per core).
    assert limited <= 0.30 + TOLERANCE, f"{limited:.3f} cores under a 30% cap (baseline {baseline:.2f})"

    unlimited = target.unlimit()
    restored = unlimited.detail["cpu"]
    assert unlimited.cpu_mechanism == "duty-cycle" and restored["within_tolerance"] is True
    assert restored["cpu_share"] <= 0.30 + TOLERANCE
    assert not is_alive(*loop) and running(target.members())
    # Nothing stops the tree any more (a duty cycle at 30% would show it stopped most of the time).
    assert not wait_until(lambda: any(stopped(p) for p, _ in target.members()), 0.5)
    after = tree_share(target, 1.0)
    if baseline > 0.30 + TOLERANCE:
        assert unlimited.throttled_periods is not None and unlimited.throttled_periods >= 5
        assert unlimited.throttled_ns is not None and unlimited.throttled_ns > 0
    # Other work on this 2-core machine can hold the tree below its two cores: the cap must hold regardless,
    # the floor (the tree did run, it was not kept stopped) only when it ran freely before and after.
    if baseline >= 0.8 and after >= 0.8:
        assert limited >= 0.15, f"{limited:.3f} cores under a 30% cap (baseline {baseline:.2f}, after {after:.2f})"
    print(f"duty-cycle 30% cap: baseline {baseline:.3f}, limited {limited:.3f}, after {after:.3f}, "
          f"loop saw {restored['cpu_share']}")  # fmt: skip


HOG = """
import sys
print("ready", flush=True)
for line in sys.stdin:
    try:
        chunk = bytearray(int(line))  # every page written
        print("allocated", flush=True)
        del chunk
    except MemoryError:
        print("MemoryError", flush=True)
"""


def ask(proc: subprocess.Popen[bytes], size: int) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{size}\n".encode())
    proc.stdin.flush()
    assert select.select([proc.stdout], [], [], 15)[0], "the hog did not answer"
    return proc.stdout.readline().decode().strip()


def test_rlimit_memory_cap_fails_allocations_past_it_and_is_reset(
    procs: Procs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K2_CGROUP", "none")
    hog = procs.python(HOG, pipes=True)
    assert hog.stdout is not None and select.select([hog.stdout], [], [], 10)[0] and hog.stdout.readline()
    target = procs.target(hog.pid)

    effect = target.limit(mem_limit="64m")
    memory = effect.detail["memory"]
    assert effect.mem_mechanism == "rlimit" and memory["resource"] == "RLIMIT_AS"
    assert memory["readback"] == {str(hog.pid): 64 << 20} and effect.mem_bytes == 64 << 20
    assert "per process" in memory["scope"]
    assert rlimit(hog.pid, "Max address space") == str(64 << 20)
    assert ask(hog, 256 << 20) == "MemoryError"
    assert ask(hog, 1 << 20) == "allocated"  # within the cap it still works

    unlimited = target.unlimit()
    restored = unlimited.detail["memory"]
    assert unlimited.mem_mechanism == "rlimit" and unlimited.restored is True
    assert restored["restored_limits"] == {str(hog.pid): {"RLIMIT_AS": -1}}
    assert unlimited.peak_mem_bytes is not None and unlimited.oom_kills is None  # an rlimit kills nothing
    assert rlimit(hog.pid, "Max address space") == "unlimited"
    assert ask(hog, 256 << 20) == "allocated"
    assert target.unlimit().changed is False


def test_rlimit_below_what_a_process_already_maps_is_unsupported_and_changes_nothing(
    procs: Procs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K2_CGROUP", "none")
    code = "import sys\nkeep = bytearray(48 << 20)\nprint('ready', flush=True)\nsys.stdin.readline()\n"
    hog = procs.python(code, pipes=True)
    assert hog.stdout is not None and select.select([hog.stdout], [], [], 10)[0] and hog.stdout.readline()
    target = procs.target(hog.pid)
    with pytest.raises(Unsupported, match=r"already maps \d+ bytes of private memory .*> mem_limit 33554432"):
        target.limit(mem_limit="32m")
    assert rlimit(hog.pid, "Max address space") == rlimit(hog.pid, "Max data size") == "unlimited"


# -- the runner SIGKILLed mid-fault, as root and as nobody ----------------------------------------------

RUNNER = r"""
import json, subprocess, sys, time
from k2.chaos.journal import Journal
from k2.chaos.procfs import process_tree, proc_stat
from k2.chaos.targets.process import ProcessSpec, ProcessTarget
from k2.chaos.watchdog import Watchdog

journal_path, primitive, params, run_id, watch, wait = sys.argv[1:7]
if wait == "1":
    sys.stdin.readline()  # the test moves us into a cgroup first
svc = subprocess.Popen([sys.executable, "-c", BUSY], start_new_session=True)
deadline = time.monotonic() + 10
while len(process_tree(svc.pid, proc_stat(svc.pid).starttime)) < 2 and time.monotonic() < deadline:
    time.sleep(0.01)
watchdog = Watchdog.start(journal_path) if watch == "1" else None
journal = Journal(journal_path)
target = ProcessTarget(ProcessSpec.for_pid("svc", svc.pid, run_id=run_id))
_, effect = journal.inject(target, primitive, json.loads(params))
print(json.dumps({"service": svc.pid, "watchdog": watchdog and watchdog.pid, "effect": effect.to_dict()}), flush=True)
time.sleep(300)
""".replace("BUSY", repr(BUSY_TREE))

PAUSE: dict[str, Any] = {}
LIMIT = {"cpu_quota": 20_000, "mem_limit": "512m"}


def start_runner(procs: Procs, user: str | None, policy: str | None, primitive: str, params: dict[str, Any],
                 *, watch: bool, wait: bool = False) -> tuple[subprocess.Popen[bytes], Path]:  # fmt: skip
    folder = procs.workdir(user) if user else procs.workdir(pwd.getpwuid(os.getuid()).pw_name)
    journal = folder / "journal.jsonl"
    env = {"K2_CGROUP": policy} if policy else {}
    args = (str(journal), primitive, json.dumps(params), procs.run_id, "1" if watch else "0", "1" if wait else "0")
    return procs.python(RUNNER, pipes=True, user=user, env=env, args=args), journal


def injected(procs: Procs, runner: subprocess.Popen[bytes]) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    info = read_json_line(runner, 60)
    tree = service_tree(info["service"])
    procs.adopted.extend(tree)
    if info["watchdog"]:
        procs.adopt(info["watchdog"])
    loop = info["effect"]["detail"].get("cpu", {}).get("loop_pid")
    if loop:
        procs.adopt(loop)
    return info, tree


def limits_are_k2s(tree: list[tuple[int, int]], size: int = 512 << 20) -> bool:
    return all(rlimit(p, "Max address space") == str(size) for p, _ in tree)


def limits_are_reset(tree: list[tuple[int, int]]) -> bool:
    return all(rlimit(p, "Max address space") == "unlimited" for p, _ in tree)


FALLBACK_LIMITS = {"cpu": "duty-cycle", "memory": "rlimit"}
CASES = [
    pytest.param(None, "none", "pause", {"freeze": "sigstop"}, id="root-sigstop"),
    pytest.param(None, "none", "limit", FALLBACK_LIMITS, id="root-dutycycle-rlimit"),
    pytest.param(None, "v2", "pause", {"freeze": "cgroup-v2"}, id="root-v2-freezer", marks=host.v2_freezer),
    pytest.param(host.OTHER_USER, None, "pause", {"freeze": "sigstop"}, id="nobody-sigstop", marks=host.other_user),
    pytest.param(host.OTHER_USER, None, "limit", FALLBACK_LIMITS, id="nobody-dutycycle-rlimit", marks=host.other_user),
]


@pytest.mark.parametrize(("user", "policy", "primitive", "expected"), CASES)
def test_the_watchdog_undoes_each_mechanism_after_the_runner_is_sigkilled(
    procs: Procs, user: str | None, policy: str | None, primitive: str, expected: dict[str, str]
) -> None:
    runner, journal = start_runner(procs, user, policy, primitive, LIMIT if primitive == "limit" else PAUSE,
                                   watch=True)  # fmt: skip
    info, tree = injected(procs, runner)
    assert mechanisms(info["effect"]) == expected
    if user is not None:  # nobody: no cgroup is writable, so K2 chose the fallbacks by itself and says why
        measured = info["effect"]["detail"]
        parts = [measured[k] for k in ("cpu", "memory")] if primitive == "limit" else [measured]
        whys = [part["mechanism_why"] for part in parts]
        assert all("needs root" in why for why in whys), whys
    loop = info["effect"]["detail"].get("cpu", {}).get("loop_pid")
    if expected.get("freeze") == "sigstop":
        assert all(stopped(p) for p, _ in tree)
    if loop:
        assert is_alive(*procs.adopted[-1]) and limits_are_k2s(tree)

    runner.kill()  # SIGKILL: no finally, no atexit; the watchdog is all that is left
    assert wait_until(lambda: running(tree), 3.0), "the tree was not running again within 3 s"
    if loop:
        assert wait_until(lambda: not is_alive(*procs.adopted[-1]), 3.0) and wait_until(
            lambda: limits_are_reset(tree), 3.0
        )
    if expected.get("freeze") == "cgroup-v2":
        fs = Unified.find()
        assert fs is not None and wait_until(lambda: fs.cgroup_of(tree[0][0]) == "/", 3.0)
        # the watchdog moves the process out first, then removes K2's group: wait for both
        assert wait_until(lambda: not list(fs.mount.glob(f"**/k2/{procs.run_id}")), 3.0)
    assert wait_until(lambda: "recover_s" in default_log_path(journal).read_text(), 5.0)
    assert [e.status for e in read_entries(journal).values()] == ["restored"]


def k2_recover(procs: Procs, user: str | None, journal: Path) -> subprocess.CompletedProcess[str]:
    """`k2 chaos recover --journal J`, as `user`."""
    argv = ["-m", "k2", "chaos", "recover", "--journal", str(journal)]
    if user is None:
        return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=60, check=False)
    entry = pwd.getpwnam(user)
    return subprocess.run(
        [host.SYSTEM_PYTHON, *argv], capture_output=True, text=True, timeout=60, check=False, cwd=str(journal.parent),
        env={**os.environ, "PYTHONPATH": str(procs.k2_copy())}, user=user, group=entry.pw_gid, extra_groups=[],
    )  # fmt: skip


@pytest.mark.parametrize("user", [None, pytest.param(host.OTHER_USER, marks=host.other_user)], ids=["root", "nobody"])
def test_without_a_watchdog_the_loop_dies_with_the_runner_and_recover_resets_the_rest(
    procs: Procs, user: str | None
) -> None:
    policy = None if user else "none"
    runner, journal = start_runner(procs, user, policy, "limit", LIMIT, watch=False)
    info, tree = injected(procs, runner)
    loop = procs.adopted[-1]
    assert info["effect"]["detail"]["cpu"]["loop_pid"] == loop[0] and is_alive(*loop)

    runner.kill()
    # The loop sees its pipe close, SIGCONTs the tree and exits: the tree is left running...
    assert wait_until(lambda: not is_alive(*loop), 3.0), "the duty-cycle loop outlived its runner"
    assert running(tree)
    # ...while the rlimits stay until recovery resets them.
    assert limits_are_k2s(tree) and [e.status for e in read_entries(journal).values()] == ["active"]
    done = k2_recover(procs, user, journal)
    assert done.returncode == 0 and "restored 1 fault" in done.stdout + done.stderr, done.stdout + done.stderr
    assert limits_are_reset(tree) and running(tree)

    # A SIGSTOP pause left behind the same way: recover resumes the tree.
    runner, journal = start_runner(procs, user, policy, "pause", PAUSE, watch=False)
    info, tree = injected(procs, runner)
    assert info["effect"]["mechanism"] == "sigstop" and all(stopped(p) for p, _ in tree)
    runner.kill()
    assert all(stopped(p) for p, _ in tree)
    done = k2_recover(procs, user, journal)
    assert done.returncode == 0 and "restored 1 fault" in done.stdout + done.stderr, done.stdout + done.stderr
    assert running(tree)


# -- a cgroup v2 subtree delegated to an unprivileged user ----------------------------------------------


@host.v2_freezer
@host.other_user
def test_a_delegated_v2_subtree_lets_an_unprivileged_user_freeze(procs: Procs) -> None:
    """What `systemd-run --user --scope -p Delegate=yes` gives a user, made by hand: a group owned by the
    user (with its cgroup.procs, cgroup.subtree_control and cgroup.threads), the user's processes in it."""
    fs = Unified.find()
    assert fs is not None
    delegated = Cgroup2(fs, f"/k2-delegated-{procs.run_id}")
    fs.mkdir(delegated.path)
    procs.delegated.append(delegated)
    entry = pwd.getpwnam(host.OTHER_USER)
    for path in [delegated.directory, *(delegated.directory / f for f in ("cgroup.procs", "cgroup.subtree_control",
                                                                          "cgroup.threads"))]:  # fmt: skip
        os.chown(path, entry.pw_uid, entry.pw_gid)
    runner, journal = start_runner(procs, host.OTHER_USER, None, "pause", PAUSE, watch=True, wait=True)
    assert delegated.attach(runner.pid)
    assert runner.stdin is not None
    runner.stdin.write(b"go\n")
    runner.stdin.flush()

    info, tree = injected(procs, runner)
    measured = info["effect"]["detail"]
    assert info["effect"]["mechanism"] == "cgroup-v2" and measured["cgroup_events"]["frozen"] == 1
    assert measured["cgroup"] == f"{delegated.path}/k2/{procs.run_id}/svc"
    assert "cgroup v1: no write access" in measured["mechanism_why"]
    assert not any(stopped(p) for p, _ in tree)  # frozen, not stopped

    runner.kill()
    assert wait_until(lambda: running(tree) and fs.cgroup_of(tree[0][0]) == delegated.path, 3.0)
    assert wait_until(lambda: not Cgroup2(fs, measured["cgroup"]).exists(), 3.0)
    assert wait_until(lambda: "recover_s" in default_log_path(journal).read_text(), 5.0)
