"""Which backend a stack runs on: chosen at its first `up`, recorded in its state file, reused after."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from k2.stack import datadir
from k2.stack import state as statefile
from k2.stack.errors import ConfigError
from k2.stack.local import LocalStack

BACKENDS = ("local", "docker")


def open_stack(
    data_dir: str | Path | None = None, *, backend: str | None = None, project: str | None = None, **options: Any
) -> LocalStack:
    """The stack in `data_dir`, on the backend it runs on; `backend` picks one for a stack not running yet.

    Asking for another backend than the one a running stack uses is refused: its services would be
    started twice.
    """
    path = Path(data_dir).expanduser().absolute() if data_dir else datadir.default_data_dir()
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    recorded = statefile.load(path) if path.exists() else None
    running = is_running(path)
    chosen = backend or (recorded.backend if recorded else "local")
    if running and recorded is not None and chosen != recorded.backend:
        raise ConfigError(
            f"the stack in {path} runs on the {recorded.backend} backend: stop it first "
            f"(`k2 stack down --data-dir {path}`) or use another data dir for a {chosen} stack"
        )
    if chosen == "docker":
        from k2.stack.docker_stack import DockerStack

        return DockerStack(path, project=project, **options)
    if project is not None:
        raise ConfigError("--project names the Compose project of a docker stack: use it with --backend docker")
    return LocalStack(path, **options)


def is_running(data_dir: str | Path) -> bool:
    """Whether a stack K2 started runs in `data_dir` (its state file names a process or container)."""
    path = Path(data_dir).expanduser().absolute()
    recorded = statefile.load(path) if path.exists() else None
    return recorded is not None and any(s.process or s.container for s in recorded.services.values())
