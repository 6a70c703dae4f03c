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
    """The state in `data_dir`, None when there is none; ConfigError naming the file, what is wrong
    and the remedy when it cannot be read (never a traceback)."""
    path = state_path(data_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        from k2.stack.errors import ConfigError

        raise ConfigError(f"state file {path} cannot be read ({exc.strerror}); check its permissions.") from None
    try:
        data = json.loads(raw)
        _check_shape(data)
        return StackState.from_json(data)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        from k2.stack.errors import ConfigError

        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ConfigError(
            f"state file {path}{where} is unreadable: {exc}. If no stack runs there, remove it and run "
            "`k2 stack up`; if one does, stop its processes first (their pids are in the file)."
        ) from None


def _check_shape(data: Any) -> None:
    """The fields every reader relies on, with their JSON types."""
    if not isinstance(data, dict):
        raise TypeError(f"it holds {type(data).__name__}, not a JSON object")
    if not isinstance(data.get("data_dir"), str):
        raise TypeError("'data_dir' is missing or not a string")
    for key in ("services", "credentials"):
        if not isinstance(data.get(key, {}), dict):
            raise TypeError(f"{key!r} is {type(data[key]).__name__}, not a JSON object")
    for name, svc in data.get("services", {}).items():
        if not isinstance(svc, dict):
            raise TypeError(f"service {name!r} is {type(svc).__name__}, not a JSON object")
        for key in ("listen", "advertised"):
            address = svc.get(key)
            if not (isinstance(address, dict) and isinstance(address.get("port"), int)
                    and 0 < address["port"] < 65536 and isinstance(address.get("host"), str)):  # fmt: skip
                raise TypeError(f"service {name!r}: {key!r} is not a host and a port in 1..65535")
        process = svc.get("process")
        if process is not None and not (
            isinstance(process, dict) and all(isinstance(process.get(k), int) for k in ("pid", "starttime"))
        ):
            raise TypeError(f"service {name!r}: 'process' is not a pid and a start time")


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
