"""Tansu, the Kafka-protocol broker, keeping its log on its own private S3 store (`kafka-store`).

With `--brokers N` the stack runs N Tansu processes over that one store: `kafka`, `kafka-2`, ... Tansu 0.6
brokers are stateless front-ends (all have node id 111, each advertises only itself, nothing is replicated;
shared state lives in the store, updated with conditional writes), so a second broker is a second door to
the same log, not a replica: the store stays the single point of failure.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

from k2.stack import binaries
from k2.stack.services.base import ANY, HOST, ContainerSpec, Layout, Service, base_env, image
from k2.stack.state import Address, ServiceState, StackState

HEALTH_TOPIC = "__k2_health"
STORE_BUCKET = "tansu"
CLUSTER_ID = "k2"
NAME = "kafka"  # the first broker; the others are kafka-2, kafka-3, ...
MAX_BROKERS = 9
_BROKER_NAME = re.compile(r"kafka(-[2-9])?")
# Tansu's S3 request timeout. At the default 30 s a longer stall of its store fences every
# idempotent producer (stack-facts); 120 s rides out a 40 s stall.
STORE_TIMEOUT = "120s"

_quiet = logging.getLogger("k2.stack.kafka.client")


def admin_client(bootstrap: str, timeout: float) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "socket.timeout.ms": int(timeout * 1000),
            "socket.connection.setup.timeout.ms": int(max(timeout, 1) * 1000),
            "logger": _quiet,  # type: ignore[dict-item]  # the binding takes a Logger; the stubs omit it
        }
    )


class KafkaError(Exception):
    """The broker answered wrongly (Tansu says 'ready' even when its storage is broken)."""


def broker_names(count: int) -> list[str]:
    """The service names of `count` brokers: kafka, kafka-2, ..."""
    return [NAME if i == 1 else f"{NAME}-{i}" for i in range(1, count + 1)]


def is_broker(name: str) -> bool:
    return _BROKER_NAME.fullmatch(name) is not None


class Tansu(Service):
    name = NAME
    depends_on = ("kafka-store",)
    # On SIGTERM Tansu closes its listener, lets in-flight requests finish, then waits out a fixed 5 s for its
    # open client connections, which it never closes itself (its CancelKind::Terminate patience), and aborts
    # them. The waiting serves nobody and cost the main job ~5 s per broker stop: K2 ends it after 1.5 s.
    stop_patience = 1.5
    role = "Kafka protocol broker (Tansu), log on kafka-store"
    image_name = "tansu"

    def __init__(self, name: str = NAME) -> None:
        if not is_broker(name):
            raise ValueError(f"broker service name {name!r}: use {', '.join(broker_names(MAX_BROKERS))}")
        self.name = name
        if name != NAME:
            self.role = "another Kafka protocol broker (Tansu) over the same kafka-store log; not a replica"

    def port_names(self) -> tuple[str, ...]:
        return ("kafka",)

    def plan(self, layout: Layout, stack: StackState, ports: dict[str, int]) -> ServiceState:
        store = stack.services["kafka-store"]
        home = layout.service_dir(self.name)
        listen = Address(HOST, ports["kafka"])
        advertised = Address(listen.host, listen.port)
        env = base_env(home) | {
            "AWS_ACCESS_KEY_ID": stack.credentials["kafka-store_access_key"],
            "AWS_SECRET_ACCESS_KEY": stack.credentials["kafka-store_secret_key"],
            "AWS_ENDPOINT": f"http://{store.advertised}",
            "AWS_ALLOW_HTTP": "true",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_TIMEOUT": STORE_TIMEOUT,
            # Never ask a cloud metadata service for credentials: traffic stays on loopback.
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        svc = ServiceState(
            name=self.name,
            listen=listen,
            advertised=advertised,
            log=str(layout.log_file(self.name)),
            argv=[],
            env=env,
            cwd=str(home),
        )
        svc.argv = self.argv(svc)
        return svc

    @staticmethod
    def argv(svc: ServiceState) -> list[str]:
        """Rebuilt on every start: the advertised address may have moved behind a fault proxy."""
        return [
            str(binaries.tansu()),
            "broker",
            "--cluster-id",
            CLUSTER_ID,
            "--listener-url",
            f"tcp://{svc.listen}",
            "--advertised-listener-url",
            f"tcp://{svc.advertised}",
            "--storage-engine",
            f"s3://{STORE_BUCKET}/",
        ]

    def prepare(self, layout: Layout, stack: StackState, svc: ServiceState) -> None:
        layout.service_dir(self.name).mkdir(parents=True, exist_ok=True)
        svc.argv = self.argv(svc)

    def check(self, stack: StackState, svc: ServiceState, timeout: float) -> str:
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]  # not re-exported in the stubs

        admin = admin_client(str(svc.advertised), timeout)
        topics = admin.list_topics(timeout=timeout).topics
        if HEALTH_TOPIC not in topics:
            futures = admin.create_topics([NewTopic(HEALTH_TOPIC, num_partitions=1, replication_factor=1)])
            for future in futures.values():
                try:
                    future.result(timeout)
                except Exception as exc:
                    if "TOPIC_ALREADY_EXISTS" not in str(exc):
                        raise KafkaError(f"creating topic {HEALTH_TOPIC} failed: {exc}") from exc
            topics = admin.list_topics(timeout=timeout).topics
            if HEALTH_TOPIC not in topics:
                raise KafkaError(f"topic {HEALTH_TOPIC} was created but is not listed")
        return f"{len(topics)} topic(s)"

    def container_spec(self, stack: StackState, svc: ServiceState) -> ContainerSpec:
        """Reaches its store by the store's network alias: containers cannot see the host's loopback."""
        store = stack.services["kafka-store"]
        inside = dataclasses.replace(svc, listen=Address(ANY, svc.listen.port))
        return ContainerSpec(
            image=image(self.image_name),
            entrypoint="/tansu",
            command=self.argv(inside)[1:],
            env=svc.env | {"AWS_ENDPOINT": f"http://{store.name}:{store.listen.port}"},
            mounts=[svc.cwd],
            publish=[svc.listen.port],
            working_dir=svc.cwd,
        )

    def transient_errors(self) -> tuple[type[BaseException], ...]:
        from confluent_kafka import KafkaException

        return (OSError, KafkaException, KafkaError)
