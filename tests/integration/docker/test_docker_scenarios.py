"""The seed's Kafka scenarios against a containerised Tansu, through the faults, the session and its
journal, with a real idempotent producer: a brief outage (pause), a graceful stop/start (with S3
storage on a SeaweedFS container, so the data outlives the restart) and a network partition.
Each must end with every message acknowledged and read back exactly once."""

from __future__ import annotations

from pathlib import Path

from k2.chaos.faults import network_partition, service_failure
from k2.chaos.journal import read_entries
from k2.chaos.session import ChaosSession, ServiceTargets
from k2.chaos.targets.docker import DockerTarget
from tests.integration.docker.helpers import Lab, kafka_probe, require_docker
from tests.integration.kafka_clients import AckCounter as AckedProducer
from tests.integration.kafka_clients import new_topic, read_all

require_docker()

S3_ENV = {"AWS_ACCESS_KEY_ID": "k2", "AWS_SECRET_ACCESS_KEY": "k2secret", "AWS_ALLOW_HTTP": "true",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_TIMEOUT": "120s"}  # fmt: skip


def run_scenario(target: DockerTarget, bootstrap: str, journal: Path, fault_for: object) -> dict[str, int]:
    """1000 messages before, 1000 during and 1000 after the fault; returns what was seen."""
    host = bootstrap.split(":")[0]
    topic = new_topic(bootstrap)
    producer = AckedProducer(bootstrap, topic)
    values = [f"m-{i:05d}".encode() for i in range(3000)]
    producer.send(values[:1000])
    assert producer.flush(30) == 0
    with ChaosSession([ServiceTargets("kafka", target, probe=kafka_probe(host, 9092))], journal) as session:
        with fault_for() as fault:  # type: ignore[operator]
            producer.send(values[1000:2000])
            producer.producer.poll(1.0)
            acked_during = len(producer.acked)
        assert not fault.active and session.active == []
    producer.send(values[2000:])
    assert producer.flush(90) == 0, f"{len(producer.producer)} messages still in flight 90 s after the restore"
    assert producer.failed == []
    assert sorted(producer.acked) == values, "not every message was acknowledged exactly once"
    read = read_all(bootstrap, topic, len(values))
    assert sorted(set(read)) == values, f"lost: {len(set(values) - set(read))}"
    assert len(read) == len(values), f"duplicates: {len(read) - len(set(read))}"
    assert all(not e.pending for e in read_entries(journal).values())
    return {"acked_during": acked_during, "read": len(read)}


def test_brief_outage_pause_loses_and_duplicates_nothing(lab: Lab, tmp_path: Path) -> None:
    net = lab.network()
    container, bootstrap = lab.tansu(net)
    lab.wait_healthy(container)
    target = DockerTarget.find("kafka", project=lab.project)
    seen = run_scenario(target, bootstrap, tmp_path / "journal.jsonl",
                        lambda: service_failure("kafka", duration_seconds=3, mode="pause"))  # fmt: skip
    assert seen["acked_during"] == 1000, "messages were acknowledged by a paused broker"


def test_graceful_stop_start_with_s3_storage_loses_and_duplicates_nothing(lab: Lab, tmp_path: Path) -> None:
    net = lab.network()
    s3, endpoint = lab.seaweed(net)
    lab.wait_healthy(s3, 60)
    container, bootstrap = lab.tansu(net, storage="s3://tansu/", env={"AWS_ENDPOINT": endpoint, **S3_ENV})
    lab.wait_healthy(container)
    target = DockerTarget.find("kafka", project=lab.project)
    seen = run_scenario(target, bootstrap, tmp_path / "journal.jsonl",
                        lambda: service_failure("kafka", duration_seconds=3, mode="stop"))  # fmt: skip
    assert seen["acked_during"] == 1000, "messages were acknowledged by a stopped broker"


def test_network_partition_loses_and_duplicates_nothing(lab: Lab, tmp_path: Path) -> None:
    net = lab.network()
    container, bootstrap = lab.tansu(net)
    lab.wait_healthy(container)
    target = DockerTarget.find("kafka", project=lab.project)
    seen = run_scenario(target, bootstrap, tmp_path / "journal.jsonl",
                        lambda: network_partition("kafka", duration_seconds=3))  # fmt: skip
    assert seen["acked_during"] == 1000, "messages were acknowledged across the partition"
