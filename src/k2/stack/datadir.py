"""The stack's data dir: where it is by default, proof that it is safe to use, and its lock.

A data dir is the caller's own (owner = caller, not writable by group or others, see k2.stack.safefs),
created 0700, and carries a marker file so `down --purge` deletes only directories K2 made.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from k2.stack import safefs
from k2.stack.errors import ConfigError

MARKER = ".k2-stack"
STATE_NAME = "stack.json"


def default_data_dir() -> Path:
    """K2_DATA_DIR, else a system path for root (one the postgres service user can reach), else XDG state."""
    if override := os.environ.get("K2_DATA_DIR"):
        return Path(override)
    if os.geteuid() == 0:
        return Path("/var/lib/k2/stack")
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "k2" / "stack"


def ensure_usable(data_dir: Path) -> Path:
    """Create the data dir (0700) or check an existing one is the caller's and private, prove it is
    writable, and mark it as a K2 stack's; ConfigError naming the path and the remedy otherwise."""
    data_dir = data_dir.expanduser().absolute()
    if data_dir.is_symlink() or data_dir.exists():
        data_dir = safefs.check_owned_dir(data_dir)
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        with suppress(FileExistsError):
            data_dir.mkdir(mode=0o700)
        data_dir = safefs.check_owned_dir(data_dir)
        with safefs.open_dir(data_dir) as dir_fd:
            with suppress(FileExistsError):
                os.mkdir("logs", 0o700, dir_fd=dir_fd)
            with safefs.open_dir("logs", dir_fd=dir_fd) as logs_fd:
                os.fchmod(logs_fd, 0o700)
            os.close(safefs.open_file_in(dir_fd, MARKER, os.O_WRONLY | os.O_CREAT, owner=os.geteuid()))
        with tempfile.TemporaryFile(dir=data_dir, prefix=".k2-write-probe-") as probe:  # O_EXCL, unlinked
            probe.write(b"ok")
    except OSError as exc:
        raise ConfigError(
            f"data dir {data_dir} is not usable: {exc.strerror or exc}. "
            "Choose a writable directory with --data-dir (or K2_DATA_DIR)."
        ) from exc
    return data_dir


def purge(data_dir: Path) -> None:
    """Delete a stack's data dir: only one holding a K2 stack (its state file or marker), owned by the
    caller; anything else is refused with ConfigError. Symlinks inside are removed, never followed."""
    data_dir = safefs.check_owned_dir(data_dir.expanduser().absolute())
    if not ((data_dir / MARKER).is_file() or (data_dir / STATE_NAME).is_file()):
        raise ConfigError(
            f"{data_dir} holds no K2 stack (no {STATE_NAME} or {MARKER}); `down --purge` deletes only a "
            "stack's own data dir. Delete it by hand if you mean to."
        )
    shutil.rmtree(data_dir)


@contextmanager
def locked(data_dir: Path) -> Iterator[None]:
    """One `up`/`down` at a time per data dir; a second waits for the first."""
    with safefs.open_dir(data_dir) as dir_fd:
        fd = safefs.open_file_in(dir_fd, ".lock", os.O_RDWR | os.O_CREAT, owner=os.geteuid())
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
