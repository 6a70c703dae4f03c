"""The backends under test, each as a `Subject`: a real service, the target K2 faults it through, and an
independent observer (the kernel's /proc and cgroup files, the Docker engine, a TCP client, statvfs) that
never asks the target what it did.

A backend joins the suite by adding a factory to SUBJECTS; every capability its target class claims is
then tested on it (see test_capabilities.py, which fails for a claimed capability without a subject).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from k2.chaos import cgroups_v1 as cgroups
from k2.chaos.cgroups_v1 import CPU, FREEZER, MEMORY, Cgroup, cgroup_of
from k2.chaos.cgroups_v2 import Cgroup2, Unified
from k2.chaos.errors import Unsupported
from k2.chaos.local.sigstop import stopped
from k2.chaos.targets.base import Target, wait_until
from tests.compliance import echo_service

SERVICE = Path(echo_service.__file__)


@dataclass
class Subject:
    """One backend's target on a live service, and how to look at that service from outside."""

    backend: str
    target: Target
    probe: Callable[[float], bool]  # the service's health check, handed to primitives that take one
    answers: Callable[[], bool]  # a real request from outside succeeds
    observe: dict[str, Callable[[], Any]] = field(default_factory=dict)  # what the capability checks read
    foreign: Callable[[], object] | None = None  # builds (or uses) a target K2 must refuse
    unsupported_here: dict[str, str] = field(default_factory=dict)  # fault kind -> why this host cannot


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cgroups_usable() -> bool:
    try:
        for controller in (FREEZER, CPU, MEMORY):
            cgroups.mount_point(controller)
    except Unsupported:
        return False
    return True


# -- local processes --------------------------------------------------------------------------------


# How the process backend pauses and limits, per variant (the chooser's pick is forced, as K2_CGROUP would).
MECHANISMS = {
    "process": {"freeze": "cgroup-v1", "cpu": "cgroup-v1", "memory": "cgroup-v1"},
    "process:v2": {"freeze": "cgroup-v2", "cpu": "duty-cycle", "memory": "rlimit"},  # v2 limits: a fake cgroupfs
    "process:signals": {"freeze": "sigstop", "cpu": "duty-cycle", "memory": "rlimit"},
}


def _v2_frozen(pid: int) -> bool:
    fs = Unified.find()
    path = None if fs is None else fs.cgroup_of(pid)
    return fs is not None and path is not None and Cgroup2(fs, path).frozen()


def _duty_cycle_quota(pid: int) -> int | None:
    """The quota of a duty-cycle loop holding `pid`, from the process table (the loop's command line)."""
    for entry in os.scandir("/proc"):
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if b"k2.chaos.local.dutycycle" in argv and f"--pid={pid}".encode() in argv:
            return next(int(a.split(b"=")[1]) for a in argv if a.startswith(b"--quota-us="))
    return None


def _soft_rlimit(pid: int) -> int | None:
    """The lowest soft address-space or data limit of `pid` (None: both unlimited)."""
    found = []
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith(("Max address space", "Max data size")):
            value = line.split()[3]
            found += [] if value == "unlimited" else [int(value)]
    return min(found, default=None)


def process_subject(stack: ExitStack, variant: str = "process") -> Subject:
    from k2.chaos.targets.process import ProcessSpec, ProcessTarget, proc_stat, send_signal

    root = Path(tempfile.mkdtemp(prefix="k2-compliance-"))
    port, pidfile = free_port(), str(root / "svc.pid")
    argv = [sys.executable, str(SERVICE), "start", str(port), pidfile]
    assert subprocess.run(argv, timeout=30, check=False).returncode == 0, "the echo service did not start"

    def pid() -> int:
        return int(Path(pidfile).read_text())

    def cleanup() -> None:
        st = proc_stat(pid())
        if st is not None:
            send_signal(st.pid, st.starttime, 9)
        shutil.rmtree(root, ignore_errors=True)

    stack.callback(cleanup)
    run_id = f"cp-{uuid.uuid4().hex[:8]}"
    spec = ProcessSpec.for_pid("svc", pid(), restart_argv=argv, pid_file=pidfile, run_id=run_id)
    target = ProcessTarget(spec, local={"mechanisms": MECHANISMS[variant]})

    def running() -> bool:
        st = proc_stat(pid())
        return st is not None and st.state not in ("Z", "X")

    def cgroup_value(controller: str, name: str) -> str | None:
        """The file as the kernel has it for the service's group (None: not there, e.g. the root group)."""
        path = cgroup_of(pid(), controller)
        try:
            return None if path is None else Cgroup(controller, path).read(name)
        except OSError:
            return None

    def limits() -> tuple[int | None, int | None]:
        if variant != "process":
            return _duty_cycle_quota(pid()), _soft_rlimit(pid())
        quota, mem = cgroup_value(CPU, "cpu.cfs_quota_us"), cgroup_value(MEMORY, "memory.limit_in_bytes")
        return (None if quota in (None, "-1") else int(quota)), (None if mem is None else int(mem))

    def frozen() -> bool:
        mechanism = MECHANISMS[variant]["freeze"]
        if mechanism == "sigstop":
            return stopped(pid())
        return _v2_frozen(pid()) if mechanism == "cgroup-v2" else cgroup_value(FREEZER, "freezer.state") == "FROZEN"

    answers = lambda: echo_service.answers(port, 1.0)  # noqa: E731
    observe = {"running": running, "frozen": frozen, "limits": limits}

    def foreign() -> object:
        init = proc_stat(1)
        assert init is not None
        return ProcessTarget(ProcessSpec.from_dict({"name": "svc", "pid": 1, "starttime": init.starttime + 1}))

    return Subject(variant, target, lambda t: echo_service.answers(port, t), answers, observe, foreign)


# -- the fault proxy --------------------------------------------------------------------------------


def proxy_subject(stack: ExitStack) -> Subject:
    from k2.chaos.proxy import EchoServer, ProxyServer
    from k2.chaos.targets.proxy import ProxyTarget

    echo = stack.enter_context(EchoServer("echo"))
    server = ProxyServer(api=("127.0.0.1", 0), seed=1).start()
    stack.callback(server.stop)
    proxy = server.create("svc", upstream=echo.address)
    listen = proxy.listen_address

    def round_trip_ms(timeout: float = 1.0) -> float | None:
        try:
            with socket.create_connection(listen, timeout=timeout) as sock:
                sock.settimeout(timeout)
                started = time.perf_counter()
                sock.sendall(b"ping")
                if sock.recv(4) != b"ping":
                    return None
                return (time.perf_counter() - started) * 1000
        except OSError:
            return None

    target = ProxyTarget("svc", server.api_url, proxy="svc")
    probe = lambda t: round_trip_ms(t) is not None  # noqa: E731
    observe = {"reachable": lambda: round_trip_ms() is not None, "rtt_ms": lambda: round_trip_ms(3.0)}
    return Subject("proxy", target, probe, lambda: probe(1.0), observe,
                   lambda: ProxyTarget("svc", "http://192.0.2.1:8474"))  # fmt: skip


# -- a filesystem of the service's own -----------------------------------------------------------------


def _fullness(path: str) -> float:
    st = os.statvfs(path)
    return 1 - st.f_bfree / st.f_blocks


def disk_subject(stack: ExitStack) -> Subject:
    from k2.chaos.targets.disk import DiskTarget
    from k2.stack.disk import mount_limited, unmount

    if os.geteuid() != 0:
        pytest.skip("a size-limited filesystem needs root (loop mount)")
    root = Path(tempfile.mkdtemp(prefix="k2-compliance-disk-"))
    mountpoint = root / "data"
    stack.callback(shutil.rmtree, root, ignore_errors=True)
    assert mount_limited(root / "disk.img", mountpoint, 32)
    stack.callback(unmount, mountpoint)
    target = DiskTarget("svc", str(mountpoint))

    def foreign() -> object:  # a directory on the machine's own root filesystem
        here = next(d for d in ("/var/tmp", "/tmp", "/root", "/opt") if os.path.isdir(d)
                    and os.stat(d).st_dev == os.stat("/").st_dev and os.access(d, os.W_OK))  # fmt: skip
        return DiskTarget("svc", here)

    return Subject("disk", target, lambda t: True, lambda: True, {"fullness": lambda: _fullness(str(mountpoint))},
                   foreign)  # fmt: skip


# -- Docker containers --------------------------------------------------------------------------------


def docker_subject(stack: ExitStack) -> Subject:
    from k2.chaos.targets.docker import DockerTarget
    from tests.integration.docker.helpers import TANSU_IMAGE, Lab, ensure_images, kafka_probe, require_docker

    client = require_docker()
    ensure_images(client)
    lab = Lab(client)
    stack.callback(lab.cleanup)
    net, volume = lab.network(), lab.volume("32m")
    container, bootstrap = lab.tansu(net, host_config={"binds": {volume.name: {"bind": "/data", "mode": "rw"}}})
    lab.wait_healthy(container)
    probe = kafka_probe(bootstrap.split(":")[0], 9092)
    target = DockerTarget.find("kafka", project=lab.project)

    def attrs() -> dict[str, Any]:
        found: dict[str, Any] = client.api.inspect_container(container.id)
        return found

    def limits() -> tuple[int | None, int | None]:
        host = attrs()["HostConfig"]
        quota, mem = int(host.get("CpuQuota") or 0), int(host.get("Memory") or 0)
        return (quota if quota > 0 else None), (mem if 0 < mem < 1 << 62 else None)

    def mountpoint() -> str:
        return next(m["Source"] for m in attrs()["Mounts"] if m["Destination"] == "/data")

    def foreign() -> object:  # a container of another Compose project, not labelled for chaos
        other = Lab(client, project=f"other-{lab.run}")
        stack.callback(other.cleanup)
        stranger = other.run_container(TANSU_IMAGE, "kafka", net, command=["broker"])
        return DockerTarget(stranger.id, project=lab.project)

    def rtt_ms() -> float | None:
        started = time.perf_counter()
        return (time.perf_counter() - started) * 1000 if probe(3.0) else None

    observe = {
        "rtt_ms": rtt_ms,
        "running": lambda: bool(attrs()["State"]["Running"]),
        "frozen": lambda: bool(attrs()["State"]["Paused"]),
        "limits": limits,
        "reachable": lambda: probe(1.0),
        "fullness": lambda: _fullness(mountpoint()),
    }
    # Shaping needs netem in the host kernel, NET_ADMIN and tc in the image: the image here has no tc (and this
    # kernel no netem), so the backend must refuse it, naming the fault proxy as the route.
    unsupported = {"latency": "fault-proxy"}
    return Subject("docker", target, probe, lambda: probe(1.0), observe, foreign, unsupported)


# -- Kubernetes, against the FAKE API server (no cluster runs here; not tested against a live one) ----------


def kubernetes_subject(stack: ExitStack) -> Subject:
    """The observer reads the fake cluster's own object store (what Chaos Mesh would act on), never the target."""
    from k2.chaos.kubernetes import Placement
    from k2.chaos.kubernetes.api import ClusterAccess
    from k2.chaos.targets.kubernetes import KubernetesTarget
    from tests.unit.chaos.kubernetes.fake_apiserver import FakeCluster, FakePod, fake_api_server

    root = Path(tempfile.mkdtemp(prefix="k2-compliance-kube-"))
    stack.callback(shutil.rmtree, root, ignore_errors=True)
    pods = [FakePod("shop", "kafka-0", {"app": "kafka"}, ("broker",)), FakePod("shop", "app-0", {"app": "producer"})]
    cluster, kubeconfig = stack.enter_context(fake_api_server(root, FakeCluster(pods=pods)))
    placement = Placement("svc", "shop", {"app": "kafka"}, container="broker", volume_path="/data",
                          clients={"producer": {"app": "producer"}})  # fmt: skip
    target = KubernetesTarget(placement, cluster=ClusterAccess(str(kubeconfig)), run_id=f"cp{uuid.uuid4().hex[:8]}",
                              inject_timeout_s=10.0, restore_timeout_s=10.0)  # fmt: skip

    def live(kind: str, action: str | None = None) -> bool:
        with cluster.lock:
            found = [o for o in cluster.objects.values() if o["kind"] == kind]
        return any(action is None or o["spec"].get("action") == action for o in found)

    observe = {
        "running": lambda: not live("PodChaos"),
        "reachable": lambda: not live("NetworkChaos", "partition"),
        "rtt_ms": lambda: 300.0 if live("NetworkChaos", "delay") else 0.0,
        "fullness": lambda: 1.0 if live("IOChaos") else 0.0,
    }

    def foreign() -> object:  # a journaled object outside the service's namespace: refused, never deleted
        desc = target.describe()
        desc["objects"] = [{"kind": "PodChaos", "namespace": "kube-system", "name": "theirs", "uid": "u1",
                            "primitive": "stop"}]  # fmt: skip
        return KubernetesTarget.from_description(desc)

    # Chaos Mesh has no refuse-style partition: the backend must refuse it, naming the fault proxy.
    return Subject("kubernetes", target, lambda t: True, lambda: True, observe, foreign,
                   {"network_partition:refuse": "fault proxy"})  # fmt: skip


SUBJECTS: dict[str, Callable[[ExitStack], Subject]] = {
    "process": process_subject,
    "process:v2": lambda stack: process_subject(stack, "process:v2"),
    "process:signals": lambda stack: process_subject(stack, "process:signals"),
    "proxy": proxy_subject,
    "disk": disk_subject,
    "docker": docker_subject,
    "kubernetes": kubernetes_subject,
}
NEEDS_CGROUPS = {("process", "freeze"), ("process", "limits")}
# A backend's other ways of doing what it claims, each held to the same suite (`backend:variant`).
VARIANTS = {"process": ("process:v2", "process:signals")}


@pytest.fixture
def make_subject() -> Iterator[Callable[[str], Subject]]:
    """subject(backend) -> a fresh service and target; everything made is removed at the end."""
    with ExitStack() as stack:

        def make(backend: str) -> Subject:
            return SUBJECTS[backend](stack)

        yield make


def settled(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Kernel and engine state settle within milliseconds to seconds: poll with a deadline."""
    return wait_until(condition, timeout, cap=0.1)


__all__ = ["NEEDS_CGROUPS", "SUBJECTS", "VARIANTS", "Subject", "_cgroups_usable", "settled"]
