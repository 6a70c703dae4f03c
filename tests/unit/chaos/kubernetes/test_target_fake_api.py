"""KubernetesTarget's client path — apply, status read-back, delete, recovery from the journal after a crash —
through the official `kubernetes` client against a FAKE API server (tests/.../fake_apiserver.py).
The fake models the API server and Chaos Mesh's controller; this is not tested against a live cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.chaos.kubernetes.fake_apiserver import FakeCluster, FakePod, fake_api_server

from k2.chaos.errors import InjectionFailed, RestoreFailed, UnsafeTarget, Unsupported
from k2.chaos.journal import Journal
from k2.chaos.kubernetes import Placement
from k2.chaos.kubernetes.api import ClusterAccess, KubernetesApiError
from k2.chaos.targets import target_from_description
from k2.chaos.targets.base import wait_until
from k2.chaos.targets.kubernetes import KubernetesTarget

PLACEMENT = Placement(
    "kafka",
    "shop",
    {"app": "kafka"},
    container="broker",
    volume_path="/data",
    clients={"producer": {"app": "producer"}},
)


def pods() -> list[FakePod]:
    return [
        FakePod("shop", "kafka-0", {"app": "kafka"}, ("broker",)),
        FakePod("shop", "kafka-1", {"app": "kafka"}, ("broker",)),
        FakePod("shop", "producer-0", {"app": "producer"}),
        FakePod("other", "kafka-0", {"app": "kafka"}, ("broker",)),
    ]


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeCluster, Path]]:
    with fake_api_server(tmp_path, FakeCluster(pods=pods())) as served:
        yield served


def target(kubeconfig: Path, **kwargs: object) -> KubernetesTarget:
    options: dict[str, object] = {"inject_timeout_s": 5.0, "restore_timeout_s": 5.0, **kwargs}
    return KubernetesTarget(PLACEMENT, cluster=ClusterAccess(str(kubeconfig)), run_id="run0001", **options)  # type: ignore[arg-type]


def test_stop_applies_pod_failure_verifies_injection_and_start_deletes_it(fake: tuple[FakeCluster, Path]) -> None:
    cluster, kubeconfig = fake
    cluster.behaviour.reads_until_injected = 3  # the controller takes a few reconciles
    kafka = target(kubeconfig)
    effect = kafka.stop(duration_s=5)
    assert effect.detail["selected"] == 2 and effect.detail["injected"] == 2  # kafka-0, kafka-1 of "shop" only
    assert effect.detail["desired_phase"] == "Run" and effect.detail["verified_by"] == "Chaos Mesh status.experiment"
    [obj] = cluster.objects.values()
    assert obj["spec"]["action"] == "pod-failure" and obj["spec"]["duration"] == "5s"
    assert [ref.name for ref in kafka.objects] == [obj["metadata"]["name"]]
    restored = kafka.start()
    assert restored.changed and restored.detail["gone"] == [f"PodChaos shop/{obj['metadata']['name']}"]
    assert cluster.objects == {} and kafka.objects == []
    assert kafka.start().changed is False  # idempotent


def test_network_disk_and_clock_faults_round_trip(fake: tuple[FakeCluster, Path]) -> None:
    cluster, kubeconfig = fake
    kafka = target(kubeconfig)
    isolated = kafka.isolate("blackhole", "upstream", ["producer"])
    assert isolated.detail["selected"] == 3  # two kafka pods ('.') and the producer ('.Target')
    kafka.shape("latency", attributes={"latency": 100, "jitter": 10})
    kafka.fill_disk(fullness=1.0)
    kafka.skew_clock(offset_seconds=-60)
    kinds = sorted(o["kind"] for o in cluster.objects.values())
    assert kinds == ["IOChaos", "NetworkChaos", "NetworkChaos", "TimeChaos"]
    kafka.rejoin()
    assert sorted(o["spec"]["action"] for o in cluster.objects.values() if o["kind"] == "NetworkChaos") == ["delay"]
    for inverse in (kafka.unshape, kafka.free_disk, kafka.unskew):
        inverse()
    assert cluster.objects == {}


def test_unsupported_faults_touch_nothing(fake: tuple[FakeCluster, Path]) -> None:
    cluster, kubeconfig = fake
    kafka = target(kubeconfig)
    with pytest.raises(Unsupported, match="no freeze"):
        kafka.pause()
    with pytest.raises(Unsupported, match="fault proxy"):
        kafka.isolate("refuse")
    assert cluster.requests == [] and kafka.resume().changed is False


@pytest.mark.parametrize("problem", ["apply_failure", "no_pods"])
def test_a_fault_that_does_not_take_is_reported_and_removed(fake: tuple[FakeCluster, Path], problem: str) -> None:
    cluster, kubeconfig = fake
    if problem == "apply_failure":
        cluster.behaviour.apply_failure = "chaos-daemon: toda: no such volume /data"
    else:
        cluster.pods.clear()
    kafka = target(kubeconfig, inject_timeout_s=0.5)
    with pytest.raises(InjectionFailed, match="not injected within 0.5s") as raised:
        kafka.fill_disk()
    if problem == "apply_failure":
        assert "no such volume" in str(raised.value)
    assert cluster.objects == {} and kafka.objects == []


def test_a_controller_that_never_recovers_fails_the_restore_and_keeps_the_finalizer(
    fake: tuple[FakeCluster, Path],
) -> None:
    cluster, kubeconfig = fake
    kafka = target(kubeconfig, restore_timeout_s=0.3)
    kafka.skew_clock(offset_seconds=30)
    cluster.behaviour.stuck_finalizer = True
    started = time.monotonic()
    with pytest.raises(RestoreFailed, match="K2 does not strip the finalizer"):
        kafka.unskew()
    assert time.monotonic() - started < 3
    [obj] = cluster.objects.values()
    assert obj["metadata"]["finalizers"] == ["chaos-mesh/records"] and obj["metadata"]["deletionTimestamp"]
    cluster.behaviour.stuck_finalizer = False  # the controller is back: a second restore completes
    kafka.unskew()
    assert cluster.objects == {}


def test_only_this_runs_labelled_objects_are_deleted(fake: tuple[FakeCluster, Path]) -> None:
    cluster, kubeconfig = fake
    ours, other_run = (
        target(kubeconfig),
        KubernetesTarget(PLACEMENT, cluster=ClusterAccess(str(kubeconfig)), run_id="run0002", inject_timeout_s=5.0),
    )
    ours.stop(duration_s=10)
    other_run.stop(duration_s=10)
    foreign = {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "PodChaos",
        "metadata": {
            "name": "someone-elses",
            "namespace": "shop",
            "labels": {"k2.chaos/service": "kafka", "k2.chaos/primitive": "stop"},
        },
        "spec": {
            "action": "pod-failure",
            "mode": "all",
            "selector": {"labelSelectors": {"app": "kafka"}},
            "duration": "1h",
        },
    }
    ours.api().create(foreign, "podchaos")
    ours.start()
    names = sorted(name for (_, _, name) in cluster.objects)
    assert len(names) == 2 and "someone-elses" in names and all("run0002" in n or n == "someone-elses" for n in names)


def test_a_recreated_object_of_the_same_name_is_left_alone(fake: tuple[FakeCluster, Path]) -> None:
    cluster, kubeconfig = fake
    kafka = target(kubeconfig)
    kafka.stop(duration_s=10)
    [key] = cluster.objects
    impostor = dict(cluster.objects[key])
    impostor["metadata"] = {**impostor["metadata"], "uid": "someone-else", "labels": {}}
    cluster.objects[key] = impostor  # deleted and recreated by someone else under the same name
    assert kafka.start().changed is False
    assert cluster.objects[key]["metadata"]["uid"] == "someone-else"
    assert not any(method == "DELETE" for method, _ in cluster.requests)


def test_recovery_after_a_crash_between_create_and_journal_update(
    fake: tuple[FakeCluster, Path], tmp_path: Path
) -> None:
    """The journal's "injecting" line is written before the object exists, so it cannot name it; recovery
    finds it by this run's labels."""
    cluster, kubeconfig = fake
    journal_path = tmp_path / "journal.jsonl"
    crashed = Journal(journal_path)
    kafka = target(kubeconfig)
    crashed.begin(kafka, "isolate", {"mode": "blackhole", "direction": "both", "clients": None})
    kafka.isolate()  # the runner dies here: no activate() line
    crashed.close()
    assert len(cluster.objects) == 1
    with Journal(journal_path, recover=True) as journal:
        [entry] = journal.recover()
    assert entry.restore is not None and entry.restore["changed"] and cluster.objects == {}


@pytest.mark.parametrize("recoverer", ["watchdog", "k2 chaos recover"])
def test_runner_sigkilled_mid_fault_is_recovered(
    fake: tuple[FakeCluster, Path], tmp_path: Path, recoverer: str
) -> None:
    cluster, kubeconfig = fake
    journal_path = tmp_path / "journal.jsonl"
    runner = textwrap.dedent(f"""
        import sys, time
        from k2.chaos.kubernetes import Placement
        from k2.chaos.kubernetes.api import ClusterAccess
        from k2.chaos.session import ChaosSession, ServiceTargets
        from k2.chaos.faults import inject_latency
        from k2.chaos.targets.kubernetes import KubernetesTarget
        placement = Placement.from_dict({PLACEMENT.to_dict()!r})
        kafka = KubernetesTarget(placement, cluster=ClusterAccess({str(kubeconfig)!r}), run_id="run0003")
        watchdog = {recoverer == "watchdog"!r}
        with ChaosSession([ServiceTargets("kafka", kafka)], {str(journal_path)!r}, watchdog=watchdog):
            with inject_latency("kafka", latency_ms=150, jitter_ms=0):
                print("held", flush=True)
                time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", runner], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        [obj] = cluster.objects.values()
        assert obj["spec"]["delay"]["latency"] == "150ms"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if recoverer == "k2 chaos recover":
            assert cluster.objects  # nothing else restores it
            recover = [str(Path(sys.executable).with_name("k2")), "chaos", "recover", "--journal", str(journal_path)]
            done = subprocess.run(recover, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
        assert wait_until(lambda: not cluster.objects, 20, first=0.05, cap=0.2), f"{recoverer} did not delete it"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_recover_from_the_journal_alone_rebuilds_the_target(fake: tuple[FakeCluster, Path]) -> None:
    cluster, kubeconfig = fake
    kafka = target(kubeconfig)
    kafka.fill_disk()
    rebuilt = target_from_description(kafka.describe())
    assert isinstance(rebuilt, KubernetesTarget) and rebuilt.objects == kafka.objects
    assert "token" not in str(kafka.describe()).lower()  # access is a kubeconfig path, never a credential
    rebuilt.free_disk()
    assert cluster.objects == {}


def test_api_errors_name_the_remedy(tmp_path: Path) -> None:
    no_chaos_mesh = FakeCluster(pods=pods(), served_plurals=set())
    with (
        fake_api_server(tmp_path, no_chaos_mesh) as (_, kubeconfig),
        pytest.raises(KubernetesApiError, match="install Chaos Mesh"),
    ):
        target(kubeconfig).stop(duration_s=5)
    # the server is gone now: nothing answers on its port
    started = time.monotonic()
    with pytest.raises(KubernetesApiError, match="did not answer"):
        KubernetesTarget(
            PLACEMENT,
            cluster=ClusterAccess(str(kubeconfig), request_timeout_s=1.0),
            run_id="run0001",
        ).stop(duration_s=5)
    assert time.monotonic() - started < 10
    with pytest.raises(KubernetesApiError, match="cannot load Kubernetes access"):
        KubernetesTarget(PLACEMENT, cluster=ClusterAccess(str(tmp_path / "missing")), run_id="run0001").stop()


def test_the_fake_api_server_refuses_what_a_strict_server_would(fake: tuple[FakeCluster, Path]) -> None:
    _, kubeconfig = fake
    api = target(kubeconfig).api()
    bad = {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "PodChaos",
        "metadata": {"name": "x", "namespace": "shop"},
        "spec": {"action": "container-kill", "mode": "all", "selector": {}, "containerName": "typo"},
    }
    with pytest.raises(KubernetesApiError, match="HTTP 422"):
        api.create(bad, "podchaos")
    del bad["spec"]["containerName"]
    with pytest.raises(KubernetesApiError, match="HTTP 400.*containerNames"):
        api.create(bad, "podchaos")


def test_a_journal_naming_a_foreign_object_is_refused(fake: tuple[FakeCluster, Path]) -> None:
    """A tampered or stale journal that names someone else's object (uid and all) gets it refused, not deleted."""
    cluster, kubeconfig = fake
    kafka = target(kubeconfig)
    foreign = {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "PodChaos",
               "metadata": {"name": "prod-experiment", "namespace": "shop", "labels": {"team": "sre"}},
               "spec": {"action": "pod-failure", "mode": "all", "selector": {"labelSelectors": {"app": "kafka"}},
                        "duration": "1h"}}  # fmt: skip
    created = kafka.api().create(foreign, "podchaos")
    desc = kafka.describe()
    desc["objects"] = [{"kind": "PodChaos", "namespace": "shop", "name": "prod-experiment",
                        "uid": created["metadata"]["uid"], "primitive": "stop"}]  # fmt: skip
    with pytest.raises(UnsafeTarget, match="K2 deletes only objects it created"):
        target_from_description(desc).start()
    assert ("podchaos", "shop", "prod-experiment") in cluster.objects
    desc["objects"][0]["namespace"] = "kube-system"
    with pytest.raises(UnsafeTarget, match="outside"):
        target_from_description(desc)


def test_an_object_deleted_by_someone_else_is_forgotten_on_restore(fake: tuple[FakeCluster, Path]) -> None:
    cluster, kubeconfig = fake
    kafka = target(kubeconfig)
    kafka.skew_clock(offset_seconds=5)
    cluster.objects.clear()  # e.g. `kubectl delete` by an operator
    assert kafka.unskew().changed is False and kafka.objects == []
