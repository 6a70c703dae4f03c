"""The Docker engine as the docker backend sees it: the SDK client, the labels that say which
containers K2 may touch, and what this machine can observe when the engine runs on it (the
container's pid and cgroups, TCP reachability of its addresses).

The SDK is imported lazily so that `k2.chaos` works without it; a missing SDK or engine is an
`Unsupported` error that says how to get one.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2.chaos.cgroups_v1 import CPU, FREEZER, MEMORY, Cgroup, cgroup_of
from k2.chaos.errors import ChaosError, UnsafeTarget, Unsupported

if TYPE_CHECKING:
    import docker

__all__ = [
    "LABEL_CHAOS",
    "LABEL_CHAOS_SERVICE",
    "LABEL_NUMBER",
    "LABEL_PROJECT",
    "LABEL_SERVICE",
    "ContainerNotFound",
    "allowed",
    "api_error",
    "cgroup_values",
    "check_allowed",
    "client_for",
    "freezer_state",
    "host_pid",
    "normalize_project",
    "reach",
]

log = logging.getLogger(__name__)

LABEL_PROJECT = "com.docker.compose.project"  # set by Compose v1 and v2 alike
LABEL_SERVICE = "com.docker.compose.service"
LABEL_NUMBER = "com.docker.compose.container-number"
LABEL_CHAOS = "k2.chaos"  # "true": K2 may fault this container whatever its project
LABEL_CHAOS_SERVICE = "k2.chaos.service"  # the service name of a labelled container outside Compose

# cgroup v1 files the limit primitives read back (controller, file).
CGROUP_FILES: dict[str, tuple[str, str]] = {
    "memory.limit_in_bytes": (MEMORY, "memory.limit_in_bytes"),
    "memory.memsw.limit_in_bytes": (MEMORY, "memory.memsw.limit_in_bytes"),
    "cpu.cfs_quota_us": (CPU, "cpu.cfs_quota_us"),
    "cpu.cfs_period_us": (CPU, "cpu.cfs_period_us"),
}

_clients: dict[str | None, docker.DockerClient] = {}
_clients_lock = threading.Lock()


class ContainerNotFound(ChaosError, LookupError):
    """No container matches the service (or the recorded container id is gone)."""


def client_for(docker_host: str | None = None, timeout: float = 60.0) -> docker.DockerClient:
    """A pinged client for `docker_host` (None: the environment's DOCKER_HOST or the local socket),
    shared by every target on that engine. The environment's host goes through `from_env`, so its
    TLS settings (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH) apply."""
    with _clients_lock:
        client = _clients.get(docker_host)
        if client is not None:
            return client
        try:
            import docker
        except ImportError as exc:
            raise Unsupported(
                "the docker backend needs the Docker SDK for Python: `pip install 'k2-chaos[docker]'` (or `docker`)"
            ) from exc
        where = docker_host or os.environ.get("DOCKER_HOST") or "the local socket /var/run/docker.sock"
        try:
            if docker_host and docker_host != os.environ.get("DOCKER_HOST"):
                client = docker.DockerClient(base_url=docker_host, timeout=int(timeout))
            else:
                client = docker.from_env(timeout=int(timeout))
            client.ping()
        except Exception as exc:  # the SDK raises DockerException or a requests error, depending on the phase
            raise Unsupported(
                f"no Docker engine answers at {where} ({exc}): start one (`scripts/docker-setup.sh` installs "
                "and starts it) or point DOCKER_HOST at it"
            ) from exc
        _clients[docker_host] = client
        return client


def api_error(exc: BaseException) -> str:
    """The engine's own explanation of a failed call, without the SDK's URL noise."""
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).strip()


# -- which containers K2 may touch ---------------------------------------------------------


def normalize_project(name: str) -> str:
    """Compose v1 strips everything but [a-z0-9_-] from project names (v2 keeps them); compare both ways."""
    return re.sub(r"[^a-z0-9_-]", "", name.lower())


def chaos_labelled(labels: Mapping[str, str]) -> bool:
    return str(labels.get(LABEL_CHAOS, "")).strip().lower() in {"true", "1", "yes"}


def allowed(labels: Mapping[str, str], project: str | None) -> bool:
    """In the configured Compose project, or explicitly labelled k2.chaos=true."""
    if chaos_labelled(labels):
        return True
    theirs = labels.get(LABEL_PROJECT)
    return project is not None and theirs is not None and normalize_project(theirs) == normalize_project(project)


def check_allowed(attrs: Mapping[str, Any], project: str | None) -> None:
    """Raise `UnsafeTarget` unless the container may be faulted."""
    labels = attrs.get("Config", {}).get("Labels") or {}
    if allowed(labels, project):
        return
    name = str(attrs.get("Name", "")).lstrip("/") or attrs.get("Id", "?")[:12]
    theirs = labels.get(LABEL_PROJECT)
    where = f"Compose project {theirs!r}" if theirs else "no Compose project"
    mine = f"the configured project {project!r}" if project else "no configured project"
    raise UnsafeTarget(
        f"container {name} ({attrs.get('Id', '?')[:12]}) belongs to {where}, not {mine}, and is not labelled "
        f"{LABEL_CHAOS}=true: K2 only faults containers of the declared stack. Configure the project "
        f"(DockerTarget.find(service, project=...)) or label the container {LABEL_CHAOS}=true"
    )


# -- what this machine can observe when the engine runs here --------------------------------


def host_pid(attrs: Mapping[str, Any]) -> int | None:
    """The container's init pid as this machine sees it, or None when the engine is elsewhere (or
    the container is not running): the pid must be in a cgroup named after the container id."""
    pid = int(attrs.get("State", {}).get("Pid") or 0)
    if pid <= 0:
        return None
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    return pid if attrs.get("Id", "\0") in text else None


def cgroup_values(pid: int | None) -> dict[str, str]:
    """The cgroup v1 limit files of the container's groups ({} if not observable here)."""
    if pid is None:
        return {}
    values: dict[str, str] = {}
    for key, (controller, filename) in CGROUP_FILES.items():
        try:
            path = cgroup_of(pid, controller)
            if path is not None:
                values[key] = Cgroup(controller, path).read(filename)
        except (OSError, ChaosError):  # not mounted, no swap accounting, or not readable: skip that file
            continue
    return values


def freezer_state(pid: int | None) -> str | None:
    """FROZEN/FREEZING/THAWED of the container's freezer group (what `docker pause` uses on cgroup v1)."""
    if pid is None:
        return None
    try:
        path = cgroup_of(pid, FREEZER)
        return None if path is None else Cgroup(FREEZER, path).read("freezer.state")
    except (OSError, ChaosError):
        return None


def _try_connect(address: tuple[str, int], timeout: float) -> str:
    try:
        with socket.create_connection(address, timeout=timeout):
            return "connected"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timed out"
    except OSError as exc:  # EHOSTUNREACH, ENETUNREACH, ...
        return f"failed: {exc.strerror or exc}"


def reach(addresses: Sequence[tuple[str, int]], timeout: float) -> dict[str, str]:
    """Try a TCP connection to every address at once; "connected", "refused", "timed out", ... each."""
    if not addresses:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(addresses))) as pool:
        results = list(pool.map(lambda a: _try_connect(a, timeout), addresses))
    return {f"{host}:{port}": result for (host, port), result in zip(addresses, results, strict=True)}
