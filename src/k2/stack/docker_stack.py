"""The docker backend: Kafka, its store, S3 and PostgreSQL as containers of one Compose project.

The same services, commands, data dirs, ports and credentials as the local backend (so everything above
the stack cannot tell them apart), with two differences: each infrastructure service runs from a local
image (scripts/docker-setup.sh builds them), on a bridge network of its own, its data dir bind-mounted
from the stack's data dir and its client port published on 127.0.0.1; and K2's own services (the
fault proxy, the schema registry) stay host processes next to the runner.

Containers carry Compose's project and service labels, so `docker compose -p PROJECT ps` lists them and
the chaos framework's DockerTarget finds and may fault them (and nothing of any other project).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2.chaos.targets.docker_engine import LABEL_NUMBER, LABEL_PROJECT, LABEL_SERVICE
from k2.stack import clocks
from k2.stack.errors import ConfigError, ServiceFailed
from k2.stack.local import LocalStack, Progress
from k2.stack.services.base import ContainerSpec, image
from k2.stack.state import ServiceState, StackState

if TYPE_CHECKING:
    import docker

LABEL_NETWORK = "com.docker.compose.network"
LABEL_DATA_DIR = "k2.stack.data-dir"
LABEL_SPEC = "k2.stack.spec"
STOP_GRACE_S = 20


def default_project(data_dir: Path) -> str:
    """One project per data dir, so two stacks on one engine never share containers."""
    return "k2-" + hashlib.sha256(str(data_dir).encode()).hexdigest()[:8]


def _check_project(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
        raise ConfigError(
            f"docker project {name!r} is not a valid Compose project name: use lowercase letters, digits, '-' and '_'"
        )
    return name


class DockerStack(LocalStack):
    """LocalStack's verbs (up, down, status, logs, start, stop, chaos_session) over containers."""

    backend = "docker"

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        project: str | None = None,
        fixed_ports: Mapping[str, int] | None = None,
        on_progress: Progress | None = None,
        start_timeout: float = 120.0,
        brokers: int | None = None,
    ) -> None:
        super().__init__(
            data_dir, fixed_ports=fixed_ports, on_progress=on_progress, start_timeout=start_timeout, brokers=brokers
        )
        recorded = self.state(required=False)
        chosen = project or (recorded.project if recorded and recorded.project else default_project(self.data_dir))
        if recorded and recorded.project and recorded.project != chosen:
            raise ConfigError(
                f"the stack in {self.data_dir} runs as docker project {recorded.project!r}, not {chosen!r}: "
                "drop --project, or use another data dir"
            )
        self.project = _check_project(chosen)
        self._client: docker.DockerClient | None = None
        self._network_lock = threading.Lock()

    @property
    def network(self) -> str:
        return f"{self.project}_default"

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            from k2.chaos.errors import Unsupported
            from k2.chaos.targets.docker_engine import client_for

            try:
                self._client = client_for(None)
            except Unsupported as exc:
                raise ConfigError(f"docker backend: {exc}") from exc
        return self._client

    # ---- LocalStack hooks -------------------------------------------------------------------------

    def up(self) -> StackState:
        self._require_images()
        try:
            return super().up()
        except BaseException:
            self._remove_network()  # its containers are gone already
            raise

    def _plan_missing(self, stack: StackState) -> None:
        stack.project = self.project
        super()._plan_missing(stack)

    def _started(self, svc: ServiceState) -> bool:
        return svc.container is not None or super()._started(svc)

    def _alive(self, svc: ServiceState) -> bool:
        if svc.container is None:
            return super()._alive(svc)
        attrs = self._inspect(svc.container)
        return bool(attrs and attrs["State"].get("Running"))

    def container_pid(self, svc: ServiceState) -> int | None:
        """The host pid of the container's main process (for checks in /proc), or None if it does not run."""
        attrs = self._inspect(svc.container) if svc.container else None
        pid = attrs["State"].get("Pid") if attrs and attrs["State"].get("Running") else None
        return int(pid) if pid else None

    def _release(self, svc: ServiceState) -> None:
        if svc.container is None:
            super()._release(svc)

    def _launch(self, stack: StackState, svc: ServiceState) -> None:
        spec = self.services[svc.name].container_spec(stack, svc)
        if spec is None:
            super()._launch(stack, svc)
            return
        if svc.name in clocks.ARMED:  # its libfaketime and offset file, at the path its environment names
            spec = dataclasses.replace(spec, mounts=[*spec.mounts, str(clocks.clock_dir(stack.data_dir, svc.name))])
        import docker.errors

        digest = hashlib.sha256(json.dumps(spec.__dict__, sort_keys=True).encode()).hexdigest()[:16]
        try:
            attrs = self._inspect(svc.container) if svc.container else None
            if attrs is not None and (attrs["Config"].get("Labels") or {}).get(LABEL_SPEC) != digest:
                self._remove(attrs["Id"])  # its command changed since (e.g. a new address): recreate it
                attrs = None
            if attrs is None:
                svc.container = self._create(svc.name, spec, digest)
            self.client.api.start(svc.container)
        except docker.errors.APIError as exc:
            raise ServiceFailed(svc.name, f"its container could not be started: {exc.explanation or exc}") from exc

    def _terminate(self, svc: ServiceState, *, kill: bool) -> str:
        if svc.container is None:
            return super()._terminate(svc, kill=kill)
        attrs = self._inspect(svc.container)
        how = "already gone"
        if attrs is not None:
            state = attrs["State"]
            if state.get("Paused"):
                self.client.api.unpause(svc.container)  # a paused container cannot be stopped gracefully
            if state.get("Running") or state.get("Paused"):
                if kill:
                    self.client.api.kill(svc.container)
                else:
                    patience = math.ceil(self.services[svc.name].stop_patience or STOP_GRACE_S)
                    self.client.api.stop(svc.container, timeout=patience)
            code = (self._inspect(svc.container) or attrs)["State"].get("ExitCode")
            if kill:
                how = "killed"
            elif code == 137:
                how = f"stopped, SIGKILL after {patience}s of patience"
            else:
                how = f"stopped (exit {code})"
            self._remove(svc.container)
        svc.container = None
        return how

    def down(self, *, purge: bool = False) -> list[tuple[str, str]]:
        ended = super().down(purge=purge)
        if self._client is not None or ended:
            self._remove_network()
        return ended

    def _log_of(self, svc: ServiceState, lines: int | None) -> str:
        if svc.container is None:
            return super()._log_of(svc, lines)
        import docker.errors

        try:
            raw = self.client.api.logs(svc.container, tail=lines if lines is not None else "all")
        except docker.errors.NotFound:
            return ""
        return bytes(raw).decode("utf-8", "replace")

    def _runtime_of(self, svc: ServiceState) -> tuple[int | None, str]:
        if svc.container is None:
            return super()._runtime_of(svc)
        attrs = self._inspect(svc.container) or {}
        return (attrs.get("State") or {}).get("Pid") or None, f"container {attrs.get('Name', svc.container[:12])}"

    # ---- the engine -------------------------------------------------------------------------------

    def _inspect(self, container: str) -> dict[str, Any] | None:
        import docker.errors

        try:
            attrs: dict[str, Any] = self.client.api.inspect_container(container)
            return attrs
        except docker.errors.NotFound:
            return None

    def _remove(self, container: str) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(container, force=True)

    def _require_images(self) -> None:
        import docker.errors

        missing = []
        for service in self.services.values():
            if service.image_name is None:
                continue
            try:
                self.client.api.inspect_image(image(service.image_name))
            except docker.errors.ImageNotFound:
                missing.append(image(service.image_name))
        if missing:
            raise ConfigError(
                f"docker backend: image(s) {', '.join(missing)} not found on the engine. Build them with "
                "`bash scripts/docker-setup.sh` (no registry needed: they are made from the installed wheels)."
            )

    def _ensure_network(self) -> None:
        with self._network_lock:  # services start in parallel; a second create would make a twin network
            if self._networks():
                return
            self.client.api.create_network(
                self.network,
                driver="bridge",
                labels={LABEL_PROJECT: self.project, LABEL_NETWORK: "default", LABEL_DATA_DIR: str(self.data_dir)},
            )

    def _networks(self) -> list[dict[str, Any]]:
        """The project's network (the engine's name filter also matches longer names)."""
        return [n for n in self.client.api.networks(names=[self.network]) if n["Name"] == self.network]

    def _remove_network(self) -> None:
        import docker.errors

        for net in self._networks():
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_network(net["Id"])

    def _create(self, name: str, spec: ContainerSpec, digest: str) -> str:
        """A container as Compose would name and label it, on the project network under its service name."""
        container_name = f"{self.project}-{name}-1"
        stale = self._inspect(container_name)
        if stale is not None:
            theirs = (stale["Config"].get("Labels") or {}).get(LABEL_DATA_DIR)
            if theirs != str(self.data_dir):
                raise ConfigError(
                    f"container {container_name} belongs to the stack in {theirs or 'an unknown data dir'}; "
                    f"stop that one (`k2 stack down --data-dir {theirs}`) or pick another --project"
                )
            self._remove(stale["Id"])  # left by a crashed `up` of this very stack
        self._ensure_network()
        api = self.client.api
        host_config = api.create_host_config(
            binds={path: {"bind": path, "mode": "rw"} for path in spec.mounts},
            port_bindings={port: ("127.0.0.1", port) for port in spec.publish},
            network_mode=self.network,
            init=False,
        )
        created = api.create_container(
            spec.image,
            command=spec.command,
            entrypoint=[spec.entrypoint],
            environment=spec.env,
            user=spec.user or "",
            working_dir=spec.working_dir,
            name=container_name,
            labels={
                LABEL_PROJECT: self.project,
                LABEL_SERVICE: name,
                LABEL_NUMBER: "1",
                "com.docker.compose.oneoff": "False",
                LABEL_DATA_DIR: str(self.data_dir),
                LABEL_SPEC: digest,
            },
            ports=list(spec.publish),
            host_config=host_config,
            networking_config=api.create_networking_config({self.network: api.create_endpoint_config(aliases=[name])}),
            stop_signal=self.services[name].stop_signal,
            stop_timeout=math.ceil(self.services[name].stop_patience or STOP_GRACE_S),  # a `stop` fault's too
            healthcheck={"test": ["NONE"]},  # the stack's own checks decide health (the images' assume other ports)
        )
        return str(created["Id"])
