"""cgroup v2 limits and the mechanism chooser, against a FAKE cgroupfs (tests/unit/chaos/fake_cgroupfs.py).

This machine's kernel binds cpu and memory to cgroup v1, so cpu.max / memory.max run here only on the
fake; the v2 freezer runs for real in tests/integration/chaos/test_local_mechanisms.py. Pids are fake.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.chaos.fake_cgroupfs import PAGE, FakeCgroupfs

from k2.chaos.cgroups_v2 import parse_unified_mount, parse_unified_path
from k2.chaos.errors import InjectionFailed, InvalidFault, Unsupported
from k2.chaos.local.chooser import choose, policy_from_env
from k2.chaos.local.common import CGROUP_V1, CGROUP_V2, CPU, DUTY_CYCLE, FREEZE, MEMORY, RLIMIT, SIGSTOP, TreeState
from k2.chaos.local.tree import LocalFaults
from k2.chaos.local.v2 import HOME, V2Cpu

RUN, NAME = "unit-v2", "kafka"
TREE = [(4001, 11), (4002, 12)]
K2_GROUP = f"/k2/{RUN}/{NAME}"


def faults(fs: FakeCgroupfs, members: list[tuple[int, int]] = TREE, policy: str = "v2") -> LocalFaults:
    local = LocalFaults(NAME, RUN, lambda: list(members), TreeState(), policy=policy, unified=fs)
    local.learn_home(members[0][0])
    return local


@pytest.fixture
def fs(tmp_path: Path) -> FakeCgroupfs:
    """A v2-only host whose root cgroup holds the service and delegates cpu and memory (as in a VM without
    systemd), with a group of the machine's own next to it."""
    fake = FakeCgroupfs(tmp_path / "cgroup")
    fake.add_group("/machine.slice")
    for pid, _ in TREE:
        fake.add_process(pid, "/")
    return fake


def test_parsers_find_the_unified_mount_and_a_pids_group() -> None:
    hybrid = "\n".join([
        "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw",
        "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu",
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
    ])  # fmt: skip
    v2_only = "25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
    assert parse_unified_mount(hybrid) == Path("/sys/fs/cgroup/unified")
    assert parse_unified_mount(v2_only) == Path("/sys/fs/cgroup")
    assert parse_unified_mount(hybrid.splitlines()[1]) is None
    assert parse_unified_path("4:memory:/a\n0::/user.slice/x.scope\n") == "/user.slice/x.scope"
    assert parse_unified_path("0::/\n") == "/" and parse_unified_path("4:memory:/a\n") is None


def test_cpu_cap_nests_under_home_enables_only_its_own_groups_and_restores(fs: FakeCgroupfs) -> None:
    local = faults(fs)
    assert local.choose() == {FREEZE: CGROUP_V2, CPU: CGROUP_V2, MEMORY: CGROUP_V2}
    root_before, neighbour = fs.snapshot("/"), fs.snapshot("/machine.slice")

    measured = local.limit(TREE, 20_000, 100_000, None, 0.0)["cpu"]
    assert measured["mechanism"] == CGROUP_V2 and measured["cgroup"] == K2_GROUP
    assert measured["readback"] == {"cpu.max": "20000 100000"}
    assert (measured["quota_us"], measured["period_us"]) == (20_000, 100_000)
    assert fs.read(K2_GROUP, "cpu.max") == "20000 100000"
    assert fs.read(f"/k2/{RUN}", "cgroup.subtree_control") == fs.read("/k2", "cgroup.subtree_control") == "cpu"
    assert fs.cgroup_of(4001) == fs.cgroup_of(4002) == K2_GROUP
    assert local.state.previous[HOME] == {4001: "/", 4002: "/"}
    fs.bump(K2_GROUP, "cpu.stat", nr_periods=30, nr_throttled=12, throttled_usec=900_000)

    restored = local.unlimit(5.0)
    assert restored is not None
    cpu = restored["cpu"]
    assert cpu["counters"]["nr_throttled"] == 12 and cpu["counters"]["throttled_time"] == 900_000_000
    assert cpu["moved_to"] == {"4001": "/", "4002": "/"} and cpu["restored"] is True
    assert fs.cgroup_of(4001) == fs.cgroup_of(4002) == "/"
    assert not fs.directory("/k2").exists()
    assert fs.snapshot("/machine.slice") == neighbour
    root_after = fs.snapshot("/")
    assert {k: v for k, v in root_after.items() if k != "cgroup.procs"} == {
        k: v for k, v in root_before.items() if k != "cgroup.procs"
    }
    assert local.unlimit(5.0) is None  # idempotent


def test_memory_cap_writes_max_and_no_swap_and_reads_oom_kills(fs: FakeCgroupfs) -> None:
    local = faults(fs)
    measured = local.limit(TREE, None, 100_000, (96 << 20) + 123, 0.0)["memory"]
    assert measured["readback"] == {"memory.max": str(96 << 20), "memory.swap.max": "0"}
    assert measured["mem_bytes"] == 96 << 20
    assert (96 << 20) % PAGE == 0 and measured["charges_moved"] is False
    fs.bump(K2_GROUP, "memory.events", oom=1, oom_kill=1)  # what the kernel counts when it kills in the group
    (fs.directory(K2_GROUP) / "memory.peak").write_text(f"{90 << 20}\n")

    restored = local.unlimit(5.0)
    assert restored is not None
    memory = restored["memory"]
    assert memory["counters"]["oom_kill"] == 1 and memory["counters"]["max_usage_in_bytes"] == 90 << 20
    assert memory["restored"] is True and not fs.directory("/k2").exists()


def test_freezer_and_limits_share_one_group_until_the_last_is_lifted(fs: FakeCgroupfs) -> None:
    local = faults(fs)
    local.limit(TREE, 50_000, 100_000, 256 << 20, 0.0)
    frozen = local.freeze(TREE, 5.0, None)
    assert frozen["mechanism"] == CGROUP_V2 and frozen["cgroup_events"]["frozen"] == 1
    assert local.frozen()

    thawed = local.thaw(5.0, None)
    assert thawed is not None and thawed["moved_to"] == {}  # the limits still hold: the tree stays in
    assert fs.cgroup_of(4001) == K2_GROUP and fs.read(K2_GROUP, "cgroup.freeze") == "0"
    restored = local.unlimit(5.0)
    assert restored is not None and set(restored) == {CPU, MEMORY}
    assert fs.cgroup_of(4001) == "/" and not fs.directory("/k2").exists()


def test_a_failed_cap_leaves_nothing_applied(fs: FakeCgroupfs) -> None:
    local = faults(fs)
    fs.refuse_moves.add(4002)
    with pytest.raises(InjectionFailed, match="nothing is left applied"):
        local.limit(TREE, 20_000, 100_000, None, 0.0)
    assert fs.cgroup_of(4001) == fs.cgroup_of(4002) == "/"
    assert not fs.directory("/k2").exists()


def test_recovery_from_the_description_alone(fs: FakeCgroupfs) -> None:
    local = faults(fs)
    local.describe()  # what the journal writes before injection
    local.limit(TREE, 20_000, 100_000, 128 << 20, 0.0)
    again = LocalFaults(NAME, RUN, lambda: list(TREE), TreeState.build(
        local.state.home, local.state.previous, local.state.prev_values, local.state.local()), unified=fs)  # fmt: skip
    restored = again.unlimit(5.0)
    assert restored is not None and restored["cpu"]["moved_to"] == {}  # memory still held the shared group
    assert restored["memory"]["moved_to"] == {"4001": "/", "4002": "/"}
    assert not fs.directory("/k2").exists()


def test_missing_controller_is_named_and_the_fallback_chosen(tmp_path: Path) -> None:
    hybrid = FakeCgroupfs(tmp_path / "unified", controllers=("hugetlb",), enabled=())
    hybrid.add_process(4001, "/")
    local = faults(hybrid, [(4001, 11)])
    assert local.choose() == {FREEZE: CGROUP_V2, CPU: DUTY_CYCLE, MEMORY: RLIMIT}
    assert "the 'cpu' controller is missing from" in local.state.why[CPU] and "(hugetlb;" in local.state.why[CPU]
    assert "the 'memory' controller is missing" in local.state.why[MEMORY]
    with pytest.raises(Unsupported, match=r"'cpu' controller is missing from .*cgroup\.controllers.*K2_CGROUP"):
        V2Cpu(local.tree, hybrid).cap([(4001, 11)], 20_000, 100_000)


def test_a_home_with_processes_is_not_changed_to_delegate(tmp_path: Path) -> None:
    """cgroup v2 lets only a group without processes enable controllers for its children; K2 does not move
    the home's other processes away nor write the home's subtree_control: it falls back instead."""
    fs = FakeCgroupfs(tmp_path / "cgroup")
    fs.add_group("/user.slice", enable=("cpu", "memory"))
    fs.add_group("/user.slice/session-1.scope")
    fs.add_process(4001, "/user.slice/session-1.scope")
    fs.add_process(4999, "/user.slice/session-1.scope")  # the user's shell: not K2's
    before = fs.snapshot("/user.slice/session-1.scope")
    local = faults(fs, [(4001, 11)])
    assert local.choose() == {FREEZE: CGROUP_V2, CPU: DUTY_CYCLE, MEMORY: RLIMIT}
    assert "does not enable 'cpu' for its children" in local.state.why[CPU]
    assert fs.snapshot("/user.slice/session-1.scope") == before
    assert not [w for w in fs.writes if w[1] == "cgroup.subtree_control"]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("auto", CGROUP_V2), ("v2", CGROUP_V2), ("none", DUTY_CYCLE), ("v1", CGROUP_V1)],
)
def test_policies(fs: FakeCgroupfs, monkeypatch: pytest.MonkeyPatch, policy: str, expected: str) -> None:
    monkeypatch.setattr("k2.chaos.local.v1.mounts", dict)  # a v2-only host: no v1 hierarchy at all
    assert choose(CPU, policy, v1_home={}, v2_home="/", unified=fs).mechanism == expected
    frozen = choose(FREEZE, policy, v1_home={}, v2_home="/", unified=fs)
    assert frozen.mechanism == {"none": SIGSTOP, "v1": CGROUP_V1}.get(policy, CGROUP_V2)
    if policy == "v1":
        assert "cgroup v1: the 'freezer' controller is not mounted" in frozen.why


def test_policy_from_env_refuses_unknown_values() -> None:
    assert policy_from_env({}) == "auto" and policy_from_env({"K2_CGROUP": " V2 "}) == "v2"
    with pytest.raises(InvalidFault, match=r"K2_CGROUP='cgroupv2' is not a policy: use one of auto, v2, none, v1"):
        policy_from_env({"K2_CGROUP": "cgroupv2"})


def test_a_cap_already_held_is_refused_before_anything_is_touched(fs: FakeCgroupfs) -> None:
    local = faults(fs)
    local.limit(TREE, 20_000, 100_000, None, 0.0)
    writes = len(fs.writes)
    with pytest.raises(InjectionFailed, match="its cpu already capped by run unit-v2; unlimit it first"):
        local.limit(TREE, 50_000, 100_000, 64 << 20, 0.0)
    assert len(fs.writes) == writes and fs.read(K2_GROUP, "cpu.max") == "20000 100000"
    assert local.unlimit(5.0) is not None and not fs.directory("/k2").exists()
