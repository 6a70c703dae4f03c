"""The stack's data dir: where it is by default, and a clear error when it cannot be used."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from k2.stack.errors import ConfigError


def default_data_dir() -> Path:
    """K2_DATA_DIR, else a system path for root (one the postgres service user can reach), else XDG state."""
    if override := os.environ.get("K2_DATA_DIR"):
        return Path(override)
    if os.geteuid() == 0:
        return Path("/var/lib/k2/stack")
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "k2" / "stack"


def ensure_usable(data_dir: Path) -> Path:
    """Create the data dir (mode 0711: services running as other users may pass through) and prove
    it is writable, or raise ConfigError naming the path and the remedy."""
    data_dir = data_dir.expanduser().absolute()
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"data dir {data_dir} exists and is not a directory. Pass --data-dir with a directory path.")
    try:
        created = not data_dir.exists()
        data_dir.mkdir(parents=True, exist_ok=True)
        if created:
            os.chmod(data_dir, 0o711)
        (data_dir / "logs").mkdir(exist_ok=True)
        probe = data_dir / ".k2-write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"data dir {data_dir} is not usable: {exc.strerror or exc}. "
            "Choose a writable directory with --data-dir (or K2_DATA_DIR)."
        ) from exc
    return data_dir


@contextmanager
def locked(data_dir: Path) -> Iterator[None]:
    """One `up`/`down` at a time per data dir; a second waits for the first."""
    with open(data_dir / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
