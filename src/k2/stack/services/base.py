"""What every embedded service provides to the local backend: a plan, a start, a health check."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from k2.stack.state import ServiceState, StackState

HOST = "127.0.0.1"
# Inside a container a service listens on every interface of its own network namespace.
ANY = "0.0.0.0"


def image(name: str) -> str:
    """The locally built image of a service (scripts/docker-setup.sh), tag from K2_IMAGE_TAG."""
    return f"k2/{name}:{os.environ.get('K2_IMAGE_TAG', 'local')}"


@dataclass(frozen=True)
class ContainerSpec:
    """How a service runs on the docker backend: the same command and data as on the local backend,
    with host paths bind-mounted at the same place and its client port published on loopback."""

    image: str
    entrypoint: str
    command: list[str]
    env: dict[str, str]
    mounts: list[str]  # host directories, mounted at the same path inside
    publish: list[int]  # container ports published on 127.0.0.1 under the same number
    user: str | None = None
    working_dir: str | None = None


@dataclass(frozen=True)
class Layout:
    """Paths inside a stack's data dir; every service keeps its data under its own directory."""

    data_dir: Path

    def service_dir(self, name: str) -> Path:
        return self.data_dir / name

    def log_file(self, name: str) -> Path:
        return self.data_dir / "logs" / f"{name}.log"


def base_env(home: Path) -> dict[str, str]:
    """A clean environment: nothing of the caller's (AWS profiles, proxies) leaks into a service."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }


class Service(ABC):
    """One service of the stack, by role. Subclasses hold no state: everything lives in ServiceState."""

    name: str
    depends_on: tuple[str, ...] = ()
    stop_signal: str = "SIGTERM"
    # seconds a graceful stop (the stack's and a chaos `stop` fault's) waits before SIGKILL; None: their default
    stop_patience: float | None = None
    # what `k2 stack status` says the service is for
    role: str = ""
    # its local image on the docker backend (see `image`); None: a host process on every backend
    image_name: str | None = None

    @abstractmethod
    def plan(self, layout: Layout, stack: StackState, ports: dict[str, int]) -> ServiceState:
        """Command, environment and addresses for a first start, on the ports given."""

    @abstractmethod
    def port_names(self) -> tuple[str, ...]:
        """Names of the ports to allocate; the first is the client-facing one."""

    def needs_grpc_offset(self) -> bool:
        """SeaweedFS listens on port + 10000 as well; the allocator must keep those free too."""
        return False

    def ports_to_bind(self, stack: StackState, svc: ServiceState) -> list[tuple[str, int]]:
        """(whose, port) pairs this process will listen on, checked free before it starts."""
        owned = [svc.listen.port, *svc.extra_ports.values()]
        if self.needs_grpc_offset():
            owned += [p + 10000 for p in owned]
        return [(self.name, p) for p in owned]

    def prepare(self, layout: Layout, stack: StackState, svc: ServiceState) -> None:  # noqa: B027
        """Idempotent one-time setup before a start (directories, initdb)."""

    def after_stop(self, layout: Layout, svc: ServiceState) -> None:  # noqa: B027
        """Undo what prepare set up outside the process (mounts), once the process is gone."""

    @abstractmethod
    def check(self, stack: StackState, svc: ServiceState, timeout: float) -> str:
        """One real operation against the service; returns a short detail or raises."""

    def after_healthy(self, stack: StackState, svc: ServiceState) -> None:  # noqa: B027
        """Idempotent setup that needs the service up (buckets, databases)."""

    def transient_errors(self) -> tuple[type[BaseException], ...]:
        """Errors that mean 'not ready yet' while waiting for health."""
        return (OSError,)

    def container_spec(self, stack: StackState, svc: ServiceState) -> ContainerSpec | None:
        """How it runs as a container (services with an image_name); None: a host process, like K2's own."""
        return None
