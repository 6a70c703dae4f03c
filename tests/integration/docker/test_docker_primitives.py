"""Each docker primitive on a running Tansu container built from the local image: the effect seen
from outside (a Kafka client, TCP connections, docker inspect, df), then full restoration."""

from __future__ import annotations

import json
import socket

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from k2.chaos.errors import UnsafeTarget, Unsupported
from k2.chaos.faults import inject_latency
from k2.chaos.session import ChaosSession, ServiceTargets
from k2.chaos.targets import target_from_description
from k2.chaos.targets.docker import ContainerNotFound, DockerTarget
from k2.chaos.targets.docker_limits import UNLIMITED_MEM
from k2.chaos.targets.docker_net import snapshot
from tests.integration.docker.helpers import Lab, free_port, kafka_probe, require_docker

require_docker()


def answers(bootstrap: str, timeout: float = 2.0) -> bool:
    """A real Kafka client's view: does a metadata request succeed within `timeout`?"""
    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


def connects(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def test_pause_freezes_the_broker_and_resume_restores_it(lab: Lab) -> None:
    net = lab.network()
    container, bootstrap = lab.tansu(net)
    lab.wait_healthy(container)
    target = DockerTarget.find("kafka", project=lab.project)
    probe = kafka_probe(bootstrap.split(":")[0], 9092)

    paused = target.pause(probe=probe)
    assert paused.frozen and paused.freezer_state == "FROZEN" and paused.answered is False
    container.reload()
    assert container.attrs["State"]["Paused"]
    assert not answers(bootstrap), "a Kafka client got metadata from a paused broker"

    resumed = target.resume(probe=probe)
    assert resumed.changed and resumed.answered
    container.reload()
    assert container.attrs["State"]["Running"] and not container.attrs["State"]["Paused"]
    assert answers(bootstrap, 10)
    assert target.resume().changed is False  # idempotent


def test_stop_start_and_kill_start_keep_the_address(lab: Lab) -> None:
    net = lab.network()
    container, bootstrap = lab.tansu(net)
    lab.wait_healthy(container)
    target = DockerTarget.find("kafka", project=lab.project)
    host = bootstrap.split(":")[0]

    stopped = target.stop(timeout=5)
    assert stopped.gone and stopped.exit_code in (0, 137, 143)
    container.reload()
    assert not container.attrs["State"]["Running"]
    assert not connects(host, 9092)
    started = target.start(probe=kafka_probe(host, 9092))
    assert started.detail["healthy"] and started.detail["addresses_changed"] == []
    assert answers(bootstrap, 10)
    assert target.start().changed is False

    killed = target.kill()
    assert killed.exit_code == 137 and not killed.detail["restarted_by_policy"]
    assert not connects(host, 9092)
    target.start()
    assert answers(bootstrap, 10)


def test_isolate_cuts_every_network_and_rejoin_restores_aliases_addresses_and_ports(lab: Lab) -> None:
    pinned, auto = lab.network("pinned"), lab.network("auto", pinned=False)
    port = free_port()
    container, bootstrap = lab.tansu(pinned, host_config={"port_bindings": {9092: ("127.0.0.1", port)}})
    auto.connect(container, aliases=["broker", "kafka-b"])
    lab.wait_healthy(container)
    container.reload()
    before = snapshot(container.attrs)
    target = DockerTarget.find("kafka", project=lab.project)
    host = bootstrap.split(":")[0]
    assert connects("127.0.0.1", port) and answers(bootstrap)

    isolated = target.isolate(probe=kafka_probe(host, 9092))
    assert set(isolated.detail["networks"]) == {pinned.name, auto.name}
    assert isolated.new_connections and "connected" not in isolated.new_connections
    container.reload()
    assert container.attrs["NetworkSettings"]["Networks"] == {}
    assert not connects(host, 9092) and not connects("127.0.0.1", port)
    assert not answers(bootstrap)

    rejoined = target.rejoin(probe=kafka_probe(host, 9092))
    assert rejoined.changed and rejoined.detail["addresses_changed"] == []
    container.reload()
    after = snapshot(container.attrs)
    keep = ("name", "aliases", "ipv4", "ipv4_pinned", "mac")
    assert [{k: e[k] for k in keep} for e in after] == [{k: e[k] for k in keep} for e in before]
    assert container.attrs["NetworkSettings"]["Ports"]["9092/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    assert connects("127.0.0.1", port) and answers(bootstrap, 10)
    assert target.rejoin().changed is False


@pytest.mark.parametrize("created_with", [{}, {"mem_limit": "512m", "cpu_quota": 50000, "cpu_period": 100000}])
def test_limit_shows_in_inspect_and_unlimit_restores_the_original_values(lab: Lab, created_with: dict) -> None:
    net = lab.network()
    container, _ = lab.tansu(net, host_config=dict(created_with))
    lab.wait_healthy(container)
    container.reload()
    original = {k: container.attrs["HostConfig"][k] for k in ("CpuQuota", "CpuPeriod", "Memory", "MemorySwap")}
    target = DockerTarget.find("kafka", project=lab.project)
    cgroup_before = dict(target.baseline["cgroup"])

    limited = target.limit(cpu_quota=20000, mem_limit="256m")
    container.reload()
    host = container.attrs["HostConfig"]
    assert (host["CpuQuota"], host["Memory"], host["MemorySwap"]) == (20000, 256 << 20, 256 << 20)
    assert (limited.cpu_quota_us, limited.mem_bytes) == (20000, 256 << 20)
    assert limited.detail["cgroup"]["cpu.cfs_quota_us"] == "20000"
    assert limited.detail["cgroup"]["memory.limit_in_bytes"] == str(256 << 20)

    restored = target.unlimit()
    container.reload()
    now = {k: container.attrs["HostConfig"][k] for k in original}
    if created_with:  # limits that existed come back exactly
        assert now == original
    else:  # "no limit" comes back as Docker can write it: quota -1, memory at the kernel's no-limit value
        assert now["CpuQuota"] in (0, -1) and now["Memory"] in (0, UNLIMITED_MEM)
    assert restored.detail["cgroup"] == cgroup_before, "the cgroup files differ from before the limit"
    assert target.unlimit().changed is False


def test_shape_is_unsupported_here_and_names_the_fault_proxy(lab: Lab, tmp_path) -> None:
    net = lab.network()
    container, _ = lab.tansu(net, host_config={"cap_add": ["NET_ADMIN"]})
    lab.wait_healthy(container)
    target = DockerTarget.find("kafka", project=lab.project)
    with pytest.raises(Unsupported, match="fault-proxy"):
        target.shape("latency", attributes={"latency": 200, "jitter": 50})
    # Through a fault and its journal: refused cleanly, nothing left pending.
    with ChaosSession([ServiceTargets("kafka", target)], tmp_path / "journal.jsonl", watchdog=False) as s:
        with pytest.raises(Unsupported, match="fault-proxy"), inject_latency("kafka", latency_ms=200, jitter_ms=50):
            pass
        assert s.require_journal().pending() == []


def test_fill_disk_fills_the_data_volume_and_free_disk_empties_it(lab: Lab) -> None:
    net = lab.network()
    volume = lab.volume("32m")
    container, _ = lab.tansu(net, host_config={"binds": {volume.name: {"bind": "/data", "mode": "rw"}}})
    target = DockerTarget.find("kafka", project=lab.project)

    filled = target.fill_disk(fullness=0.95, path="/data")
    assert filled.fullness >= 0.94 and filled.avail_bytes < 2 << 20
    freed = target.free_disk()
    assert freed.removed == (filled.file,)
    df_after = next(iter(freed.detail["df_after"].values()))
    assert df_after["used"] == filled.detail["df_before"]["used"]
    assert target.free_disk().changed is False
    container.reload()
    assert container.attrs["State"]["Running"]


def test_a_container_outside_the_project_is_refused_unless_labelled(lab: Lab) -> None:
    net = lab.network()
    other, _ = lab.tansu(net, labels=lab.labels("kafka", project="someone-elses-stack"))
    with pytest.raises(UnsafeTarget, match="someone-elses-stack.*k2.chaos=true"):
        DockerTarget.find("kafka", project=lab.project)
    with pytest.raises(UnsafeTarget):
        DockerTarget(other.id, project=lab.project)
    with pytest.raises(ContainerNotFound):
        DockerTarget.find("no-such-service", project=lab.project)
    labelled, _ = lab.tansu(net, service="labelled", labels={"k2.test": lab.run, "k2.chaos": "true"})
    assert DockerTarget(labelled.name).container_id == labelled.id  # found by name, allowed by label


def test_describe_is_json_and_rebuilds_the_same_target(lab: Lab) -> None:
    net = lab.network()
    container, _ = lab.tansu(net)
    target = DockerTarget.find("kafka", project=lab.project)
    described = json.loads(json.dumps(target.describe()))
    rebuilt = target_from_description(described)
    assert isinstance(rebuilt, DockerTarget) and rebuilt.container_id == container.id
    assert rebuilt.describe()["baseline"]["networks"] == described["baseline"]["networks"]
