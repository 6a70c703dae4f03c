"""cgroup v1 helpers: parsing, K2's group naming, and create/freeze/remove on the real hierarchy."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests import host

from k2.chaos import cgroups_v1 as cgroups
from k2.chaos.cgroups_v1 import (
    FREEZER,
    Cgroup,
    cgroup_of,
    home_of,
    join,
    k2_group,
    leave,
    parse_mountinfo,
    parse_proc_cgroup,
    read_counters,
)
from k2.chaos.errors import Unsupported

MOUNTINFO = """\
22 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw
30 22 0:25 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:26 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
32 30 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
33 30 0:28 / /sys/fs/cgroup/freezer rw,nosuid - cgroup cgroup rw,freezer
34 30 0:29 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory,clone_children
35 30 0:30 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
"""


def test_parse_mountinfo_maps_controllers() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert mounts["cpu"] == mounts["cpuacct"] == Path("/sys/fs/cgroup/cpu,cpuacct")
    assert mounts["freezer"] == Path("/sys/fs/cgroup/freezer")
    assert mounts["memory"] == Path("/sys/fs/cgroup/memory")
    assert mounts["name=systemd"] == Path("/sys/fs/cgroup/systemd")
    for not_a_controller in ("rw", "xattr", "clone_children", "nsdelegate"):
        assert not_a_controller not in mounts


def test_parse_proc_cgroup() -> None:
    text = "6:freezer:/\n4:memory:/a/b\n2:cpu,cpuacct:/k2/run/svc\n0::/\n"
    assert parse_proc_cgroup(text) == {"freezer": "/", "memory": "/a/b", "cpu": "/k2/run/svc", "cpuacct": "/k2/run/svc"}


@pytest.mark.parametrize("home", ["/", "/process_api/abc", "/docker/x/"])
def test_k2_group_and_home_of_invert(home: str) -> None:
    path = k2_group(home, "run1", "kafka")
    assert path.endswith("/k2/run1/kafka")
    assert home_of(path, "run1", "kafka") == (home.rstrip("/") or "/")
    assert home_of(path, "run2", "kafka") == path  # another run's group is not ours to strip


def test_missing_controller_is_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "mounts", lambda: {})
    with pytest.raises(Unsupported, match="cgroup v1 'freezer'.*docker backend"):
        cgroups.mount_point(FREEZER)


needs_freezer = host.v1_freezer


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    home = cgroup_of(os.getpid(), FREEZER) or "/"
    if proc.poll() is None:
        Cgroup(FREEZER, home).attach(proc.pid)  # out of any frozen group, or SIGKILL waits
        proc.kill()
    proc.wait(10)


@needs_freezer
def test_group_lifecycle_freezes_and_prunes(sleeper: subprocess.Popen[bytes]) -> None:
    run_id = f"unit-{uuid.uuid4().hex[:8]}"
    home = cgroup_of(sleeper.pid, FREEZER)
    assert home is not None
    group = Cgroup(FREEZER, k2_group(home, run_id, "svc"))
    group.create()
    try:
        previous = join(group, [sleeper.pid, 999_999_999])  # a pid that does not exist is skipped
        assert previous == {sleeper.pid: home}
        assert group.procs() == [sleeper.pid]
        assert group.set_frozen(True, 5.0)
        assert Path(f"/proc/{sleeper.pid}/stat").read_text().split(") ")[1][0] == "D"
        assert group.set_frozen(False, 5.0)
        moved = leave(group, previous, home, 5.0)
        assert moved == {sleeper.pid: home}
        assert cgroup_of(sleeper.pid, FREEZER) == home
        assert not group.exists()
        assert not Cgroup(FREEZER, home_of(group.path, run_id, "svc").rstrip("/") + f"/k2/{run_id}").exists()
    finally:
        if group.exists():
            group.set_frozen(False, 5.0)
            leave(group, {}, home, 5.0)


@needs_freezer
def test_root_freezer_reads_thawed_and_counters_parse() -> None:
    assert Cgroup(FREEZER, "/").freezer_state() == "THAWED"
    counters = read_counters(Cgroup("cpu", "/"), "cpu.stat")
    assert {"nr_periods", "nr_throttled", "throttled_time"} <= counters.keys()
    assert read_counters(Cgroup("cpu", "/"), "no.such.file") == {}
