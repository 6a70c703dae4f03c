"""Fast checks of the docker backend that need no Docker engine and no service: how each service's
command becomes a container, what the state file keeps of it, and which backend a data dir opens on."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from k2.chaos.targets import docker_engine
from k2.stack import ConfigError, LocalStack
from k2.stack import state as statefile
from k2.stack.backends import open_stack
from k2.stack.docker_stack import DockerStack, default_project
from k2.stack.services import embedded_services
from k2.stack.services.base import HOST, Layout
from k2.stack.services.fault_proxy import FaultProxy
from k2.stack.services.kafka import Tansu
from k2.stack.services.postgres import HBA_SAMENET, IMAGE_SERVER, Postgres, allow_container_clients
from k2.stack.services.registry import SchemaRegistry
from k2.stack.services.seaweed import SeaweedS3
from k2.stack.state import Address, ServiceState, StackState

STORE_PORTS = {"s3": 18001, "master": 18002, "volume": 18003, "filer": 18004, "admin": 18005}
S3_PORTS = {"s3": 18101, "master": 18102, "volume": 18103, "filer": 18104, "admin": 18105}
STORE_PROXY_PORT = 18010
KAFKA_PORT = 18201
KAFKA_PROXY_PORT = 18202


@pytest.fixture
def fake_binaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """plan() and Tansu.argv() resolve the host binaries; any executable will do, none is run."""
    for name, env in (("tansu", "K2_TANSU_BIN"), ("weed", "K2_WEED_BIN")):
        path = tmp_path / "bin" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("#!/bin/sh\nexit 1\n")
        path.chmod(0o755)
        monkeypatch.setenv(env, str(path))


def _kafka_stack(tmp_path: Path) -> tuple[StackState, ServiceState]:
    """kafka-store and kafka planned as LocalStack does: each advertised on a fault-proxy port of its own."""
    layout = Layout(tmp_path / "stack")
    stack = StackState(str(layout.data_dir), backend="docker", project="k2-test")
    store = SeaweedS3("kafka-store", bucket="tansu", role="store").plan(layout, stack, dict(STORE_PORTS))
    store.advertised = Address(HOST, STORE_PROXY_PORT)
    stack.services["kafka-store"] = store
    kafka = Tansu().plan(layout, stack, {"kafka": KAFKA_PORT})
    kafka.advertised = Address(HOST, KAFKA_PROXY_PORT)
    stack.services["kafka"] = kafka
    return stack, kafka


def _flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.mark.usefixtures("fake_binaries")
def test_tansu_container_listens_on_all_interfaces_and_reaches_its_store_by_alias(tmp_path: Path) -> None:
    stack, kafka = _kafka_stack(tmp_path)
    spec = Tansu().container_spec(stack, kafka)
    assert spec.entrypoint == "/tansu"
    assert spec.command[0] == "broker"
    assert _flag(spec.command, "--listener-url") == f"tcp://0.0.0.0:{KAFKA_PORT}"
    assert _flag(spec.command, "--advertised-listener-url") == f"tcp://127.0.0.1:{KAFKA_PROXY_PORT}"
    # the store's own port on the project network, not the host-side fault-proxy port
    assert spec.env["AWS_ENDPOINT"] == f"http://kafka-store:{STORE_PORTS['s3']}"
    assert kafka.env["AWS_ENDPOINT"] == f"http://127.0.0.1:{STORE_PROXY_PORT}"  # the host's state is untouched
    assert {k: v for k, v in spec.env.items() if k != "AWS_ENDPOINT"} == {
        k: v for k, v in kafka.env.items() if k != "AWS_ENDPOINT"
    }
    assert spec.publish == [KAFKA_PORT]
    assert spec.mounts == [kafka.cwd]
    assert spec.working_dir == kafka.cwd
    assert kafka.listen == Address(HOST, KAFKA_PORT)  # container_spec does not rewrite the state


@pytest.mark.usefixtures("fake_binaries")
def test_image_tag_is_local_by_default_and_follows_k2_image_tag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, kafka = _kafka_stack(tmp_path)
    monkeypatch.delenv("K2_IMAGE_TAG", raising=False)
    assert Tansu().container_spec(stack, kafka).image == "k2/tansu:local"
    monkeypatch.setenv("K2_IMAGE_TAG", "ci-42")
    assert Tansu().container_spec(stack, kafka).image == "k2/tansu:ci-42"
    assert SeaweedS3("s3", bucket="w", role="r").container_spec(stack, stack.services["kafka-store"]).image == (
        "k2/seaweedfs:ci-42"
    )


@pytest.mark.usefixtures("fake_binaries")
def test_seaweed_container_binds_all_interfaces_and_mounts_only_its_data(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "stack")
    stack = StackState(str(layout.data_dir))
    service = SeaweedS3("s3", bucket="warehouse", role="lakehouse")
    svc = service.plan(layout, stack, dict(S3_PORTS))
    data = str(layout.service_dir("s3") / "data")
    assert f"-ip.bind={HOST}" in svc.argv  # what the container must change
    assert svc.argv[1] == f"-logdir={layout.service_dir('s3')}"  # on the host: not /tmp; purged with the stack

    spec = service.container_spec(stack, svc)
    assert spec.entrypoint == "/weed"
    # only the bind address changes; its servers still find each other on the container's loopback (-ip)
    assert spec.command == [
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=0.0.0.0",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        f"-s3.port={S3_PORTS['s3']}",
        f"-master.port={S3_PORTS['master']}",
        f"-volume.port={S3_PORTS['volume']}",
        f"-filer.port={S3_PORTS['filer']}",
        f"-admin.port={S3_PORTS['admin']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-volume.preStopSeconds=0",
    ]
    assert svc.argv[2:] == [a.replace("-ip.bind=0.0.0.0", f"-ip.bind={HOST}") for a in spec.command]
    assert spec.mounts == [data]
    assert spec.working_dir == data
    assert spec.publish == [S3_PORTS["s3"]]
    assert spec.env == svc.env
    assert spec.user is None


def _postgres_state(tmp_path: Path, user: str | None) -> ServiceState:
    """What Postgres.plan returns (built by hand: as root, plan creates a system user)."""
    home = tmp_path / "stack" / "postgres"
    argv = [
        str(home / "runtime" / "bin" / "postgres"),
        "-D", str(home / "data"),
        "-p", "18301",
        "-c", f"listen_addresses={HOST}",
        "-c", "unix_socket_directories=",
        "-c", "max_connections=200",
    ]  # fmt: skip
    return ServiceState(
        "postgres", Address(HOST, 18301), Address(HOST, 18302), "log", argv, {"HOME": str(home)}, str(home), user=user
    )


def test_postgres_container_listens_everywhere_from_the_image_server(tmp_path: Path) -> None:
    svc = _postgres_state(tmp_path, user=None)
    spec = Postgres().container_spec(StackState(str(tmp_path / "stack")), svc)
    assert spec.entrypoint == IMAGE_SERVER
    assert spec.command == [
        "-D", str(tmp_path / "stack" / "postgres" / "data"),
        "-p", "18301",
        "-c", "listen_addresses=*",
        "-c", "unix_socket_directories=",
        "-c", "max_connections=200",
    ]  # fmt: skip
    assert spec.image.startswith("k2/postgres:")
    assert spec.mounts == [svc.cwd]
    assert spec.publish == [18301]
    assert spec.user == f"{os.getuid()}:{os.getgid()}"


def test_postgres_container_runs_as_the_service_users_numeric_ids(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    svc = _postgres_state(tmp_path, user="nobody")
    spec = Postgres().container_spec(StackState(str(tmp_path / "stack")), svc)
    assert spec.user == f"{nobody.pw_uid}:{nobody.pw_gid}"


def test_allow_container_clients_appends_samenet_once_and_keeps_the_rest(tmp_path: Path) -> None:
    hba = tmp_path / "pg_hba.conf"
    original = "# TYPE DATABASE USER ADDRESS METHOD\nhost all all 127.0.0.1/32 scram-sha-256\n"
    hba.write_text(original)
    allow_container_clients(tmp_path)
    once = hba.read_text()
    assert once == original + HBA_SAMENET + "\n"
    allow_container_clients(tmp_path)
    assert hba.read_text() == once


@pytest.mark.usefixtures("fake_binaries")
def test_only_infrastructure_services_have_an_image(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "stack")
    stack = StackState(str(layout.data_dir))
    for service, port_name in ((FaultProxy(), "api"), (SchemaRegistry(), "schema-registry")):
        assert service.image_name is None
        svc = service.plan(layout, stack, {port_name: 18401})
        assert service.container_spec(stack, svc) is None
    with_image = {name for name, s in embedded_services().items() if s.image_name is not None}
    assert with_image == {"kafka-store", "kafka", "s3", "postgres"}
    assert (Tansu.image_name, Postgres.image_name, SeaweedS3.image_name) == ("tansu", "postgres", "seaweedfs")


def test_state_round_trip_keeps_project_and_container(tmp_path: Path) -> None:
    svc = ServiceState("kafka", Address(HOST, 1), Address(HOST, 2), "log", ["tansu"], {}, "/", container="c0ffee" * 10)
    stack = StackState(str(tmp_path), backend="docker", project="k2-abc", services={"kafka": svc})
    loaded = StackState.from_json(json.loads(json.dumps(stack.to_json())))
    assert loaded == stack
    assert loaded.project == "k2-abc" and loaded.services["kafka"].container == "c0ffee" * 10

    statefile.save(stack)
    from_disk = statefile.load(tmp_path)
    assert from_disk is not None and from_disk.project == "k2-abc"
    assert from_disk.services["kafka"].container == "c0ffee" * 10


def test_state_written_before_the_docker_backend_loads_with_none(tmp_path: Path) -> None:
    svc = ServiceState("kafka", Address(HOST, 1), Address(HOST, 2), "log", ["tansu"], {}, "/")
    old = StackState(str(tmp_path), services={"kafka": svc}).to_json()
    del old["project"]
    del old["services"]["kafka"]["container"]
    loaded = StackState.from_json(old)
    assert loaded.project is None
    assert loaded.services["kafka"].container is None
    assert loaded.backend == "local"


def test_default_project_is_stable_per_data_dir_and_a_valid_name(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert default_project(one) == default_project(tmp_path / "one")
    assert default_project(one) != default_project(two)
    name = default_project(one)
    assert name.startswith("k2-") and name == name.lower()
    assert all(c.isdigit() or c.islower() or c in "-_" for c in name)


def test_invalid_project_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'My Project' is not a valid Compose project name"):
        DockerStack(tmp_path / "stack", project="My Project")


def test_docker_stack_needs_no_engine_until_it_talks_to_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    monkeypatch.setattr(docker_engine, "_clients", {})  # no client cached by an earlier test
    stack = DockerStack(tmp_path / "stack")
    assert stack.backend == "docker"
    assert stack.project == default_project(tmp_path / "stack")
    assert stack.network == f"{stack.project}_default"
    with pytest.raises(ConfigError, match=r"docker backend: no Docker engine answers at unix:///nonexistent\.sock"):
        _ = stack.client


def test_docker_stack_keeps_the_project_its_state_records(tmp_path: Path) -> None:
    statefile.save(StackState(str(tmp_path), backend="docker", project="k2-recorded"))
    assert DockerStack(tmp_path).project == "k2-recorded"
    with pytest.raises(ConfigError, match="'k2-recorded', not 'other'"):
        DockerStack(tmp_path, project="other")


def _save_docker_state(data_dir: Path, container: str | None) -> None:
    svc = ServiceState("kafka", Address(HOST, 1), Address(HOST, 2), "log", ["tansu"], {}, "/", container=container)
    statefile.save(StackState(str(data_dir), backend="docker", project="k2-running", services={"kafka": svc}))


def test_open_stack_rejects_an_unknown_backend(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown backend 'podman'; use one of local, docker"):
        open_stack(tmp_path, backend="podman")


def test_open_stack_refuses_another_backend_than_a_running_stack_uses(tmp_path: Path) -> None:
    _save_docker_state(tmp_path, container="abc123")
    with pytest.raises(ConfigError, match="runs on the docker backend") as err:
        open_stack(tmp_path, backend="local")
    assert f"k2 stack down --data-dir {tmp_path}" in str(err.value)


def test_open_stack_honours_the_requested_backend_when_nothing_runs(tmp_path: Path) -> None:
    assert type(open_stack(tmp_path / "fresh", backend="docker")) is DockerStack
    assert type(open_stack(tmp_path / "fresh", backend="local")) is LocalStack
    _save_docker_state(tmp_path, container=None)
    assert type(open_stack(tmp_path, backend="local")) is LocalStack


def test_open_stack_without_a_backend_reuses_the_recorded_one(tmp_path: Path) -> None:
    assert type(open_stack(tmp_path / "fresh")) is LocalStack
    _save_docker_state(tmp_path, container="abc123")
    opened = open_stack(tmp_path)
    assert isinstance(opened, DockerStack)
    assert opened.project == "k2-running"


def test_open_stack_refuses_a_project_for_a_local_stack(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--backend docker"):
        open_stack(tmp_path, backend="local", project="k2-mine")
    with pytest.raises(ConfigError, match="--backend docker"):
        open_stack(tmp_path / "fresh", project="k2-mine")
