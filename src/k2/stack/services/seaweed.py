"""SeaweedFS (`weed mini`) as an S3 store: the lakehouse `s3`, and `kafka-store`, the broker's own disk."""

from __future__ import annotations

import logging
import os
import pwd
import secrets
from typing import Any

from k2.stack import binaries
from k2.stack.disk import mount_limited, unmount
from k2.stack.errors import ConfigError
from k2.stack.safefs import remove_sockets
from k2.stack.services.base import ANY, HOST, ContainerSpec, Layout, Service, base_env, image
from k2.stack.state import Address, ServiceState, StackState


def s3_client(endpoint: str, access_key: str, secret_key: str, timeout: float = 5.0, attempts: int = 3) -> Any:
    """A boto3 S3 client for a loopback store; health checks pass attempts=1 to see every failure."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(
            connect_timeout=min(timeout, 2.0),
            read_timeout=timeout,
            retries={"max_attempts": attempts, "mode": "standard"},
            s3={"addressing_style": "path"},
        ),
    )


log = logging.getLogger(__name__)
HEALTH_KEY = ".k2-health"
GRPC_OFFSET = 10000  # each SeaweedFS server's gRPC port is its port + this
SOCKET_DIR = "/tmp"  # where `weed` puts its unix sockets, whatever TMPDIR says


def socket_names(svc: ServiceState) -> list[str]:
    """The unix sockets `weed mini` makes in /tmp for its own ports and never removes, even on a graceful
    stop (hundreds a day piled up here): `seaweedfs-<server>-<port>.sock` and `-grpc-<port + 10000>.sock`.
    Its gRPC ones are fixed to /tmp in its code, so K2 removes them once the process is gone."""
    ports = {"s3": svc.listen.port} | svc.extra_ports
    return [
        name
        for server, port in sorted(ports.items())
        for name in (f"seaweedfs-{server}-{port}.sock", f"seaweedfs-{server}-grpc-{port + GRPC_OFFSET}.sock")
    ]


def _host_only(arg: str) -> bool:
    """A flag naming a host directory the container does not have (its /tmp is its own anyway)."""
    return arg.startswith("-logdir=")


class SeaweedS3(Service):
    """An S3 endpoint bound to loopback with credentials enforced; buckets created after start."""

    stop_signal = "SIGTERM"
    # It usually exits ~1 s after SIGTERM, but now and then it waits 12-27 s (seen in chaos runs on both versions,
    # e.g. a store stop right after its disk filled): its filer drains HTTP connections (with a 25 s timeout) and
    # only then closes its store. A SIGKILL in that window is a crash, not the stop that was asked for. Once in CI a
    # kafka-store stopped right after its disk filled (patience then 5 s) came back answering 500 for the broker's
    # metadata, and every later scenario lost its stack (its log went with the stack; an escalated stop is the
    # likeliest cause). So a stop waits the drain out; a crash is `mode="kill"`.
    stop_patience = 30.0
    image_name = "seaweedfs"

    def __init__(self, name: str, bucket: str, role: str, disk_mb: int = 0) -> None:
        self.name = name
        self.bucket = bucket
        self.role = role
        # > 0: keep the data on a filesystem of this size (root only), so a disk fault can fill it.
        self.disk_mb = disk_mb

    def port_names(self) -> tuple[str, ...]:
        return ("s3", "master", "volume", "filer", "admin")

    def needs_grpc_offset(self) -> bool:
        return True

    def credentials(self, stack: StackState) -> tuple[str, str]:
        key_name, secret_name = f"{self.name}_access_key", f"{self.name}_secret_key"
        if key_name not in stack.credentials:
            stack.credentials[key_name] = "k2" + secrets.token_hex(6)
            stack.credentials[secret_name] = secrets.token_urlsafe(24)
        return stack.credentials[key_name], stack.credentials[secret_name]

    def plan(self, layout: Layout, stack: StackState, ports: dict[str, int]) -> ServiceState:
        access, secret = self.credentials(stack)
        home = layout.service_dir(self.name)
        argv = [
            str(binaries.weed()),
            f"-logdir={home}",  # its log files, otherwise left in /tmp at every start: purged with the stack
            "mini",
            f"-dir={home / 'data'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            f"-s3.port={ports['s3']}",
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}",
            f"-admin.port={ports['admin']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Its volume server otherwise waits 1 s after its last heartbeat before stopping, so a master could
            # send writes elsewhere: one node has no elsewhere. Every stop (a fault's, `down`) 1.1 s shorter.
            "-volume.preStopSeconds=0",
        ]
        if self.disk_mb:
            # Volumes sized to the small disk, so the store can grow on it at all.
            argv.append(f"-master.volumeSizeLimitMB={max(8, self.disk_mb // 16)}")
        env = base_env(home) | {"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}
        address = Address(HOST, ports["s3"])
        return ServiceState(
            name=self.name,
            listen=address,
            advertised=Address(address.host, address.port),
            log=str(layout.log_file(self.name)),
            argv=argv,
            env=env,
            cwd=str(home),
            stop_signal=self.stop_signal,
            extra_ports={k: v for k, v in ports.items() if k != "s3"},
        )

    def prepare(self, layout: Layout, stack: StackState, svc: ServiceState) -> None:
        home = layout.service_dir(self.name)
        (home / "data").mkdir(parents=True, exist_ok=True)
        if self.disk_mb:
            mount_limited(home / "disk.img", home / "data", self.disk_mb)

    def after_stop(self, layout: Layout, svc: ServiceState) -> None:
        if self.disk_mb:
            unmount(layout.service_dir(self.name) / "data")
        owner = pwd.getpwnam(svc.user).pw_uid if svc.user else os.geteuid()
        try:
            remove_sockets(SOCKET_DIR, socket_names(svc), owner)
        except (OSError, ConfigError) as exc:  # litter, not a failed stop: say so and go on
            log.warning("%s: its unix sockets in %s were not removed: %s", self.name, SOCKET_DIR, exc)

    def client(self, stack: StackState, svc: ServiceState, timeout: float = 5.0, attempts: int = 3) -> Any:
        access, secret = self.credentials(stack)
        return s3_client(f"http://{svc.advertised}", access, secret, timeout, attempts)

    def check(self, stack: StackState, svc: ServiceState, timeout: float) -> str:
        client = self.client(stack, svc, timeout, attempts=1)
        names = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
        if self.bucket in names:
            # A write and a read reach the filer AND the volume server, which after a restart
            # answers a little later than the S3 port does.
            client.put_object(Bucket=self.bucket, Key=HEALTH_KEY, Body=b"ok")
            if client.get_object(Bucket=self.bucket, Key=HEALTH_KEY)["Body"].read() != b"ok":
                raise OSError(f"{self.name}: health object read back wrong")
        return f"{len(names)} bucket(s)"

    def after_healthy(self, stack: StackState, svc: ServiceState) -> None:
        client = self.client(stack, svc)
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if self.bucket not in existing:
            client.create_bucket(Bucket=self.bucket)

    def container_spec(self, stack: StackState, svc: ServiceState) -> ContainerSpec:
        """Its servers still find each other on the container's loopback; only the S3 port is published."""
        data = next(a.split("=", 1)[1] for a in svc.argv if a.startswith("-dir="))
        command = [f"-ip.bind={ANY}" if a.startswith("-ip.bind=") else a for a in svc.argv[1:] if not _host_only(a)]
        return ContainerSpec(
            image=image(self.image_name),
            entrypoint="/weed",
            command=command,
            env=svc.env,
            mounts=[data],
            publish=[svc.listen.port],
            working_dir=data,
        )

    def transient_errors(self) -> tuple[type[BaseException], ...]:
        from botocore.exceptions import BotoCoreError, ClientError

        return (OSError, BotoCoreError, ClientError)
