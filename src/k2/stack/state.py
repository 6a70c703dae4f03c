"""The state file in a stack's data dir: services, pids, ports, credentials and log paths.

Written atomically (temp file + rename + fsync) and readable only by its owner, since it
holds the stack's credentials.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from k2.stack.procs import ProcessId

STATE_FILE = "stack.json"
FORMAT_VERSION = 1


@dataclass
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class ServiceState:
    """One service: where it listens, where clients are told to connect, and how to start it again."""

    name: str
    listen: Address
    advertised: Address
    log: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    user: str | None = None
    stop_signal: str = "SIGTERM"
    extra_ports: dict[str, int] = field(default_factory=dict)
    process: ProcessId | None = None
    container: str | None = None  # its container id, on the docker backend

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["process"] = self.process.to_json() if self.process else None
        # Flattened for readers that only need "is it our process?" (the chaos journal, the watchdog).
        data["pid"] = self.process.pid if self.process else None
        data["starttime"] = self.process.starttime if self.process else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceState:
        process = data.get("process")
        return cls(
            name=data["name"],
            listen=Address(**data["listen"]),
            advertised=Address(**data["advertised"]),
            log=data["log"],
            argv=list(data["argv"]),
            env=dict(data["env"]),
            cwd=data["cwd"],
            user=data.get("user"),
            stop_signal=data.get("stop_signal", "SIGTERM"),
            extra_ports=dict(data.get("extra_ports", {})),
            process=ProcessId(**process) if process else None,
            container=data.get("container"),
        )


@dataclass
class StackState:
    data_dir: str
    backend: str = "local"
    project: str | None = None  # the Compose project of its containers, on the docker backend
    credentials: dict[str, str] = field(default_factory=dict)
    services: dict[str, ServiceState] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "backend": self.backend,
            "project": self.project,
            "data_dir": self.data_dir,
            "credentials": self.credentials,
            "services": {name: svc.to_json() for name, svc in self.services.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StackState:
        return cls(
            data_dir=data["data_dir"],
            backend=data.get("backend", "local"),
            project=data.get("project"),
            credentials=dict(data.get("credentials", {})),
            services={n: ServiceState.from_json(s) for n, s in data.get("services", {}).items()},
        )


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def load(data_dir: Path) -> StackState | None:
    path = state_path(data_dir)
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return StackState.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        from k2.stack.errors import ConfigError

        raise ConfigError(
            f"state file {path} is unreadable ({exc}). If no stack runs there, remove it and run `k2 stack up`."
        ) from exc


def save(state: StackState) -> None:
    path = state_path(Path(state.data_dir))
    fd, tmp = tempfile.mkstemp(prefix=".stack.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(state.to_json(), out, indent=2, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
