"""`k2 stack up --backend docker` on a real engine: the same services, verbs and data as the local backend,
as containers of one Compose project, faulted by the chaos framework through Docker, nothing left behind."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k2.chaos.faults import resource_limit, service_failure
from k2.chaos.targets import Capability
from k2.chaos.targets.docker import DockerTarget
from k2.chaos.targets.docker_limits import effective, resources
from k2.chaos.targets.process import ProcessTarget
from k2.chaos.targets.proxy import ProxyTarget
from k2.stack import ConfigError, open_stack
from k2.stack.docker_stack import LABEL_PROJECT, LABEL_SERVICE, DockerStack
from k2.stack.services.seaweed import s3_client
from k2.testing import chaos_session
from tests.integration.stack.helpers import assert_data_survived, run_k2, seed_data

pytestmark = pytest.mark.integration

CONTAINERISED = {"kafka", "kafka-store", "s3", "postgres"}
HOST_PROCESSES = {"fault-proxy", "schema-registry", "api"}


def project_containers(engine: Any, project: str) -> dict[str, dict[str, Any]]:
    rows = engine.api.containers(all=True, filters={"label": f"{LABEL_PROJECT}={project}"})
    return {row["Labels"][LABEL_SERVICE]: row for row in rows}


def project_networks(engine: Any, project: str) -> list[str]:
    return [n["Name"] for n in engine.api.networks(filters={"label": f"{LABEL_PROJECT}={project}"})]


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    made = Path(tempfile.mkdtemp(prefix="k2-dstack-"))
    yield made
    shutil.rmtree(made, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(engine: Any, root: Path) -> Iterator[DockerStack]:
    running = open_stack(root / "stack", backend="docker")
    assert isinstance(running, DockerStack)
    try:
        running.up()
        yield running
    finally:
        running.down(purge=True)
    assert project_containers(engine, running.project) == {}
    assert project_networks(engine, running.project) == []


def test_infrastructure_runs_as_labelled_containers_and_k2_services_as_processes(
    engine: Any, stack: DockerStack
) -> None:
    assert all(row.healthy for row in stack.status()), stack.status()
    state = stack.state()
    assert (state.backend, state.project) == ("docker", stack.project)
    containers = project_containers(engine, stack.project)
    assert set(containers) == CONTAINERISED
    for name in CONTAINERISED:
        assert containers[name]["Id"] == state.services[name].container
        assert containers[name]["State"] == "running"
        published = {(p.get("IP"), p.get("PublicPort")) for p in containers[name]["Ports"] if p.get("PublicPort")}
        assert published == {("127.0.0.1", state.services[name].listen.port)}  # loopback only
    for name in HOST_PROCESSES:
        assert state.services[name].container is None and state.services[name].process is not None
    # Reopening without --backend finds the docker stack; asking for local while it runs is refused.
    assert isinstance(open_stack(stack.data_dir), DockerStack)
    with pytest.raises(ConfigError, match="runs on the docker backend"):
        open_stack(stack.data_dir, backend="local")


def test_data_survives_stopping_and_starting_every_container(stack: DockerStack) -> None:
    ep = stack.endpoints()
    seeded = seed_data(ep)
    for name in ("kafka", "s3", "postgres", "kafka-store"):
        assert stack.stop_service(name).startswith("stopped")
        assert {s.name: s.state for s in stack.status()}[name] == "stopped"
    stack.up()  # brings back every stopped service, new containers on the same data
    assert_data_survived(ep, seeded)


def test_cli_reports_the_backend_and_the_containers(stack: DockerStack) -> None:
    status = run_k2("stack", "status", "--data-dir", str(stack.data_dir))
    assert status.returncode == 0, status.stderr
    assert len(re.findall(r"\bhealthy\b", status.stdout)) == len(CONTAINERISED | HOST_PROCESSES)  # not "unhealthy"
    logs = run_k2("stack", "logs", "postgres", "--data-dir", str(stack.data_dir))
    assert logs.returncode == 0 and "database system is ready to accept connections" in logs.stdout


def test_chaos_faults_reach_the_containers_through_docker(engine: Any, stack: DockerStack) -> None:
    with chaos_session(stack, seed=7) as session:
        assert isinstance(session.service("kafka").provider(Capability.FREEZE), DockerTarget)
        assert isinstance(session.service("kafka").provider(Capability.NETWORK), ProxyTarget)
        assert isinstance(session.service("schema-registry").provider(Capability.LIFECYCLE), ProcessTarget)
        kafka = stack.state().services["kafka"].container
        with service_failure("kafka", duration_seconds=None, mode="pause", session=session) as fault:
            assert engine.api.inspect_container(kafka)["State"]["Paused"]
            assert fault.effect.answered is False and fault.effect.backend == "docker"
        assert not engine.api.inspect_container(kafka)["State"]["Paused"]
        unlimited = effective(resources(engine.api.inspect_container(kafka)))
        with resource_limit("kafka", cpu_quota=20000, mem_limit="512m", session=session):
            host = engine.api.inspect_container(kafka)["HostConfig"]
            assert (host["CpuQuota"], host["Memory"]) == (20000, 512 * 1024 * 1024)
        assert effective(resources(engine.api.inspect_container(kafka))) == unlimited
        assert stack.state().services["kafka"].container == kafka  # faults never replace the container
        ep = stack.endpoints()
        with service_failure("s3", duration_seconds=None, mode="stop", session=session):
            assert not engine.api.inspect_container(stack.state().services["s3"].container)["State"]["Running"]
        # Restored means answering again, not merely running: the very first request succeeds, without retries.
        s3_client(ep.s3_endpoint, ep.s3_access_key, ep.s3_secret_key, attempts=1).list_buckets()


def test_missing_images_are_named_with_the_remedy(engine: Any, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K2_IMAGE_TAG", "not-built")
    other = DockerStack(root / "no-images")
    with pytest.raises(ConfigError, match=r"k2/tansu:not-built.*scripts/docker-setup\.sh"):
        other.up()
    assert project_containers(engine, other.project) == {}
    assert project_networks(engine, other.project) == []
