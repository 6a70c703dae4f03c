"""The docker backend: one container of the declared stack, faulted through the Docker engine's API.

Safety: a container is found by its Compose project and service labels (Compose v1 and v2 set the
same ones) or by the label k2.chaos=true; anything else is refused with `UnsafeTarget`. After that
it is addressed by its full id, which Docker never reuses.

Exact undo: `describe()` carries a baseline read from `docker inspect` while the container is not
faulted (its networks with aliases and addresses, its limits and, when the engine runs here, the
cgroup files). Every inverse compares the container with that baseline rather than trusting a flag,
so it is idempotent and works from the journal alone, in another process, after a crash.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from k2.chaos.effects import Effect, Frozen, Started, Stopped, Thawed, measure
from k2.chaos.errors import InjectionFailed, InvalidFault, RestoreFailed
from k2.chaos.targets.base import Probe, wait_until
from k2.chaos.targets.capabilities import Capability
from k2.chaos.targets.docker_engine import (
    LABEL_CHAOS,
    LABEL_CHAOS_SERVICE,
    LABEL_NUMBER,
    LABEL_PROJECT,
    LABEL_SERVICE,
    ContainerNotFound,
    allowed,
    api_error,
    cgroup_values,
    check_allowed,
    client_for,
    freezer_state,
    host_pid,
    normalize_project,
)
from k2.chaos.targets.docker_faults import FaultsMixin
from k2.chaos.targets.docker_limits import resources
from k2.chaos.targets.docker_net import snapshot

__all__ = ["ContainerNotFound", "DockerTarget"]

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Effect)


class DockerTarget(FaultsMixin):
    """A container K2 may fault (see the module doc); implements the `Target` primitives."""

    kind = "docker"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.LIFECYCLE, Capability.FREEZE, Capability.LIMITS, Capability.NETWORK, Capability.DISK}
    )
    # What `k2 chaos list` says of this backend (see k2.chaos.faults.catalogue).
    unsupported: ClassVar[dict[str, str]] = dict.fromkeys(
        ("reset_peer", "timeout", "slow_close", "slicer", "limit_data"), "exists only in the fault proxy"
    )
    limitations: ClassVar[dict[str, str]] = {
        "network_partition": "disconnects the container: both ways, every peer (else: the fault proxy)",
        "latency": "tc netem in the container: netem in the host kernel, NET_ADMIN and tc in the image",
        "bandwidth": "tc tbf in the container: NET_ADMIN and tc in the image",
        "disk_fill": "fills the container's data volume; the engine must run on this machine",
    }

    def __init__(
        self,
        container: str,
        *,
        project: str | None = None,
        name: str | None = None,
        docker_host: str | None = None,
        stop_timeout: float | None = None,
        start_timeout: float = 120.0,
        baseline: Mapping[str, Any] | None = None,
        applied: Mapping[str, Any] | None = None,
        _must_exist: bool = True,
    ) -> None:
        self.client = client_for(docker_host)
        # Recorded so that a recovery run from another shell reaches the same engine.
        self.docker_host, self.project = docker_host or os.environ.get("DOCKER_HOST"), project
        self.stop_timeout, self.start_timeout = stop_timeout, start_timeout
        self.container_id = container
        attrs = self._inspect()
        if attrs is None and _must_exist:
            raise ContainerNotFound(f"no container {container!r} on the Docker engine: is the stack up?")
        labels: Mapping[str, str] = {}
        if attrs is not None:
            check_allowed(attrs, project)
            self.container_id = attrs["Id"]
            labels = attrs["Config"].get("Labels") or {}
        self.container_name = str((attrs or {}).get("Name", "")).lstrip("/") or container[:12]
        self.service = labels.get(LABEL_SERVICE) or labels.get(LABEL_CHAOS_SERVICE)
        self.name = name or self.service or self.container_name
        self.baseline: dict[str, Any] = copy.deepcopy(dict(baseline or {}))
        self.applied: dict[str, Any] = {"isolated": [], "limited": None, "shaped": [], "filled": []}
        self.applied.update(copy.deepcopy(dict(applied or {})))
        self._info: dict[str, Any] | None = None
        if attrs is not None and not baseline:
            self._refresh_baseline(attrs)

    # -- finding, describing, rebuilding ---------------------------------------------------------

    @classmethod
    def find(
        cls, service: str, project: str | None = None, *, number: int | None = None, **options: Any
    ) -> DockerTarget:
        """The container of `service` in Compose `project` (or labelled k2.chaos=true).

        Refuses (`UnsafeTarget`) when the only candidates belong elsewhere and are not labelled;
        with several replicas, `number` picks one (com.docker.compose.container-number).
        """
        client = client_for(options.get("docker_host"))
        found: dict[str, dict[str, Any]] = {}
        for label in (f"{LABEL_SERVICE}={service}", f"{LABEL_CHAOS_SERVICE}={service}"):
            for row in client.api.containers(all=True, filters={"label": label}):
                found[row["Id"]] = row
        for row in client.api.containers(all=True, filters={"label": f"{LABEL_CHAOS}"}):
            if any(n.lstrip("/") == service for n in row.get("Names") or []):
                found[row["Id"]] = row
        permitted = [r for r in found.values() if allowed(r.get("Labels") or {}, project)]
        norm = normalize_project(project or "")
        if project is not None:  # a labelled container of another project only if the project has none
            mine = [r for r in permitted if normalize_project((r.get("Labels") or {}).get(LABEL_PROJECT, "")) == norm]
            permitted = mine or permitted
        if number is not None:
            permitted = [r for r in permitted if (r.get("Labels") or {}).get(LABEL_NUMBER) == str(number)]
        if not permitted:
            if found:  # refuse with the reason, naming the container
                check_allowed(client.api.inspect_container(next(iter(found))), project)
            raise ContainerNotFound(
                f"no container of service {service!r} in Compose project {project!r} (nor labelled "
                f"{LABEL_CHAOS}=true): is the stack up? `docker ps -a --filter label={LABEL_SERVICE}={service}`"
            )
        if len(permitted) > 1:
            names = sorted(n.lstrip("/") for r in permitted for n in r.get("Names", [])[:1])
            raise InvalidFault(f"service {service!r} has {len(permitted)} containers {names}: pick one with number=N")
        options.setdefault("name", service)
        return cls(permitted[0]["Id"], project=project, **options)

    @classmethod
    def from_description(cls, desc: Mapping[str, Any]) -> DockerTarget:
        """Rebuild from `describe()` output; a container removed since is tolerated (inverses no-op)."""
        if desc.get("kind") != cls.kind:
            raise InvalidFault(f"not a docker target description: kind={desc.get('kind')!r}")
        return cls(
            desc["container_id"],
            project=desc.get("project"),
            name=desc.get("name"),
            docker_host=desc.get("docker_host"),
            stop_timeout=desc.get("stop_timeout"),
            start_timeout=desc.get("start_timeout", 120.0),
            baseline=desc.get("baseline"),
            applied=desc.get("applied"),
            _must_exist=False,
        )

    def describe(self) -> dict[str, Any]:
        self._refresh_baseline()
        return {
            "kind": self.kind,
            "name": self.name,
            "container_id": self.container_id,
            "container_name": self.container_name,
            "project": self.project,
            "service": self.service,
            "docker_host": self.docker_host,
            "stop_timeout": self.stop_timeout,
            "start_timeout": self.start_timeout,
            "baseline": copy.deepcopy(self.baseline),
            "applied": copy.deepcopy(self.applied),
        }

    def __repr__(self) -> str:
        return f"DockerTarget({self.name!r}, container={self.container_name!r}, project={self.project!r})"

    def _refresh_baseline(self, attrs: Mapping[str, Any] | None = None) -> None:
        """Re-read what an exact undo needs, for each aspect K2 is not faulting right now."""
        attrs = attrs or self._inspect()
        if attrs is None:
            return
        running = bool(attrs["State"].get("Running"))
        if running and not self.applied["isolated"]:
            networks = snapshot(attrs)
            if networks:
                self.baseline["networks"] = networks
        if not self.applied["limited"]:
            self.baseline["resources"] = resources(attrs)
            cgroup = cgroup_values(host_pid(attrs)) if running else {}
            if cgroup:
                self.baseline["cgroup"] = cgroup

    # -- engine access -----------------------------------------------------------------------------

    def _inspect(self) -> dict[str, Any] | None:
        import docker.errors

        try:
            attrs: dict[str, Any] = self.client.api.inspect_container(self.container_id)
            return attrs
        except docker.errors.NotFound:
            return None

    def _attrs(self) -> dict[str, Any]:
        attrs = self._inspect()
        if attrs is None:
            raise InjectionFailed(
                f"{self.name}: container {self.container_name} ({self.container_id[:12]}) no longer exists; "
                "recreate the stack, then build the target again"
            )
        return attrs

    def _running(self, primitive: str, *, paused_ok: bool = False) -> dict[str, Any]:
        """Inspect, requiring a running container, unpaused unless `paused_ok` (a partition of a
        paused container is a fine combined fault; a stop of one is not)."""
        attrs = self._attrs()
        state = attrs["State"]
        if state.get("Paused") and not paused_ok:
            raise InjectionFailed(f"{self.name}: {primitive} on a paused container would not act: resume it first")
        if not state.get("Running"):
            raise InjectionFailed(
                f"{self.name}: container {self.container_name} is {state.get('Status')}, so {primitive} would have "
                "no effect: start it first (or check why it exited: docker logs)"
            )
        return attrs

    def _engine_info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = self.client.info()
        return self._info

    def _effect(self, cls: type[E], primitive: str, t0: float, wall: float, **fields: Any) -> E:
        effect = measure(cls, primitive, self.name, self.kind, t0, wall, **fields)
        log.info("docker %s %s (%s): %.3fs %s", primitive, self.name, self.container_id[:12], effect.duration_s,
                 effect.summary())  # fmt: skip
        return effect

    def _wait_state(self, check: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        """Poll inspect until `check(attrs)` holds; the attrs then, or None at the deadline."""
        seen: list[dict[str, Any]] = []

        def condition() -> bool:
            attrs = self._inspect()
            seen[:] = [attrs] if attrs is not None else []
            return attrs is not None and check(attrs)

        return seen[0] if wait_until(condition, timeout, cap=0.05) else None

    # -- stop / kill / start -----------------------------------------------------------------------

    def stop(self, timeout: float | None = None) -> Stopped:
        """`docker stop`: the image's stop signal, SIGKILL after `timeout` s (default: the container's
        own stop timeout, else 10). Docker marks it stopped by hand, so no restart policy brings it back."""
        import docker.errors

        t0, wall = time.monotonic(), time.time()
        attrs = self._running("stop")
        grace = timeout if timeout is not None else self.stop_timeout
        if grace is None:
            grace = attrs["Config"].get("StopTimeout") or 10
        try:
            self.client.api.stop(self.container_id, timeout=math.ceil(grace))
        except docker.errors.APIError as exc:
            raise InjectionFailed(f"{self.name}: docker stop failed: {api_error(exc)}") from exc
        after = self._wait_state(lambda a: not a["State"]["Running"], 10.0)
        if after is None:
            raise InjectionFailed(f"{self.name}: still running 10 s after docker stop returned; see docker logs")
        code = after["State"]["ExitCode"]
        signal_name = str(attrs["Config"].get("StopSignal") or "SIGTERM")
        return self._effect(Stopped, "stop", t0, wall, signal=signal_name, gone=True, escalated=code == 137,
                            exit_code=code, exit_s=time.monotonic() - t0, detail={"grace_s": grace})  # fmt: skip

    def kill(self, timeout: float | None = None) -> Stopped:
        """SIGKILL every process of the container at once (`docker kill`). A restart policy may start
        it again at once; that is reported, as it is what such a service does after a crash."""
        import docker.errors

        t0, wall = time.monotonic(), time.time()
        attrs = self._running("kill")
        restarts, started = attrs.get("RestartCount", 0), attrs["State"].get("StartedAt")
        try:
            self.client.api.kill(self.container_id, signal="SIGKILL")
        except docker.errors.APIError as exc:
            raise InjectionFailed(f"{self.name}: docker kill failed: {api_error(exc)}") from exc

        def died(a: dict[str, Any]) -> bool:
            return (
                not a["State"]["Running"] or a.get("RestartCount", 0) > restarts or a["State"]["StartedAt"] != started
            )

        after = self._wait_state(died, timeout or 10.0)
        if after is None:
            raise InjectionFailed(f"{self.name}: still running {timeout or 10.0:g}s after SIGKILL; check `docker ps`")
        restarted = bool(after["State"]["Running"])
        return self._effect(Stopped, "kill", t0, wall, signal="SIGKILL", gone=True,
                            exit_code=after["State"]["ExitCode"], exit_s=time.monotonic() - t0,
                            detail={"restarted_by_policy": restarted})  # fmt: skip

    def start(self, timeout: float | None = None, probe: Probe | None = None) -> Started:
        """Start the container with its data and wait until it runs, is healthy (if it has a health
        check) and `probe` answers (if given). A no-op if it runs, so recovery may call it anytime."""
        import docker.errors

        t0, wall = time.monotonic(), time.time()
        attrs = self._inspect()
        if attrs is None:
            return self._effect(Started, "start", t0, wall, changed=False, detail={"container_gone": True})
        if attrs["State"].get("Running"):
            return self._effect(Started, "start", t0, wall, already_running=True, changed=False)
        deadline = timeout or self.start_timeout
        try:
            self.client.api.start(self.container_id)
        except docker.errors.APIError as exc:
            raise RestoreFailed(f"{self.name}: docker start failed: {api_error(exc)}; then `k2 chaos recover`") from exc
        has_health = bool((attrs["Config"].get("Healthcheck") or {}).get("Test", ["NONE"])[0] != "NONE")

        def ready(a: dict[str, Any]) -> bool:
            state = a["State"]
            if not state["Running"] and state.get("Status") in ("exited", "dead"):
                raise RestoreFailed(
                    f"{self.name}: exited with {state.get('ExitCode')} right after docker start: "
                    f"{(state.get('Error') or '').strip() or 'see docker logs ' + self.container_name}"
                )
            return state["Running"] and (not has_health or state.get("Health", {}).get("Status") == "healthy")

        after = self._wait_state(ready, deadline)
        if after is None:
            raise RestoreFailed(
                f"{self.name}: not {'healthy' if has_health else 'running'} {deadline:g}s after docker start; "
                f"see `docker inspect {self.container_name}` and its logs, then `k2 chaos recover`"
            )
        ready_s = time.monotonic() - t0
        if probe is not None and not wait_until(lambda: probe(1.0), max(1.0, deadline - ready_s), cap=0.2):
            raise RestoreFailed(f"{self.name}: started, but the probe got no answer within {deadline:g}s")
        answered = None if probe is None else True
        before = {e["name"]: e.get("ipv4") for e in self.baseline.get("networks", [])}
        now = {e["name"]: e.get("ipv4") for e in snapshot(after)}
        changed = sorted(n for n, ip in now.items() if before.get(n) not in (None, ip))
        detail = {"healthy": has_health or None, "addresses": now, "addresses_changed": changed}
        return self._effect(Started, "start", t0, wall, ready_s=ready_s, answered=answered, detail=detail)

    # -- pause / resume ----------------------------------------------------------------------------

    def pause(self, timeout: float = 10.0, probe: Probe | None = None) -> Frozen:
        """`docker pause` (the freezer cgroup). Verified: State.Paused, the freezer group FROZEN when
        the engine runs here, and `probe` (if given) unanswered; on failure it unpauses and raises."""
        import docker.errors

        t0, wall = time.monotonic(), time.time()
        self._running("pause")
        try:
            self.client.api.pause(self.container_id)
        except docker.errors.APIError as exc:
            raise InjectionFailed(f"{self.name}: docker pause failed: {api_error(exc)}") from exc
        try:
            after = self._wait_state(lambda a: a["State"].get("Paused", False), timeout)
            if after is None:
                raise InjectionFailed(f"{self.name}: State.Paused is still false {timeout:g}s after docker pause")
            frozen = freezer_state(host_pid(after))
            if frozen not in (None, "FROZEN"):
                raise InjectionFailed(f"{self.name}: paused, but its freezer group reads {frozen}")
            pause_s = time.monotonic() - t0
            answered = None if probe is None else probe(1.0)
            if answered:
                raise InjectionFailed(f"{self.name}: paused, but the probe still got an answer")
        except InjectionFailed:
            self.resume(timeout)
            raise
        return self._effect(Frozen, "pause", t0, wall, frozen=True, freezer_state=frozen, answered=answered,
                            detail={"paused": True, "pause_s": pause_s})  # fmt: skip

    def resume(self, timeout: float = 10.0, probe: Probe | None = None) -> Thawed:
        """`docker unpause`; a no-op if it is not paused (or gone). With `probe`, waits for an answer."""
        import docker.errors

        t0, wall = time.monotonic(), time.time()
        attrs = self._inspect()
        if attrs is None or not attrs["State"].get("Paused"):
            return self._effect(Thawed, "resume", t0, wall, changed=False, detail={"container_gone": attrs is None})
        try:
            self.client.api.unpause(self.container_id)
        except docker.errors.APIError as exc:
            raise RestoreFailed(
                f"{self.name}: docker unpause failed: {api_error(exc)}; run `docker unpause {self.container_name}`"
            ) from exc
        after = self._wait_state(lambda a: not a["State"].get("Paused"), timeout)
        if after is None:
            raise RestoreFailed(f"{self.name}: still paused {timeout:g}s after docker unpause; `k2 chaos recover`")
        answered = None
        if probe is not None:
            answered = wait_until(lambda: probe(1.0), timeout, cap=0.2)
            if not answered:
                raise RestoreFailed(f"{self.name}: unpaused, but the probe got no answer within {timeout:g}s")
        return self._effect(Thawed, "resume", t0, wall, freezer_state=freezer_state(host_pid(after)), answered=answered,
                            detail={"paused": False})  # fmt: skip
