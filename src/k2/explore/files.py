"""Reading and writing explore's files without being tricked, as root on a shared machine.

- A report directory must be a directory the caller owns that no one else can write (k2.stack.safefs rules);
  files in it are written to a fresh temporary name (O_EXCL, never through a symlink) and renamed over the
  target, so a reader never sees half a report and a planted symlink is replaced, not followed.
- A new file (the shrinker's regression test) is created with O_EXCL | O_NOFOLLOW: an existing file or a
  symlink in its place is refused, never overwritten.
- A file read back (a report for --replay or shrink) must be a regular file of bounded size; a symlink is
  followed only when the caller owns it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from k2.explore.errors import ExploreError
from k2.stack.errors import StackError
from k2.stack.safefs import check_owned_dir, open_dir

__all__ = ["MAX_REPORT_BYTES", "prepare_dir", "read_json", "write_atomic", "write_new_file"]

MAX_REPORT_BYTES = 64 << 20


def prepare_dir(path: Path, what: str = "report dir") -> Path:
    """`path` created if missing (0755), then checked: a directory the caller owns, writable by no one else."""
    try:
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
    except FileExistsError:
        raise ExploreError(f"{what} {path} exists and is not a directory; pass another --report-dir") from None
    except OSError as exc:
        raise ExploreError(f"{what} {path} cannot be created ({exc.strerror}); pass another --report-dir") from None
    try:
        return check_owned_dir(path, what)
    except StackError as exc:
        raise ExploreError(str(exc)) from None


def write_atomic(directory: Path, name: str, text: str) -> Path:
    """Write `directory/name` whole or not at all (see the module docstring)."""
    if "/" in name or name in ("", ".", ".."):
        raise ExploreError(f"{name!r} is not a file name")
    tmp = f".{name}.{os.getpid()}.tmp"
    try:
        with open_dir(directory) as dir_fd:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                         dir_fd=dir_fd)  # fmt: skip
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(text)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dir_fd)
                raise
    except StackError as exc:
        raise ExploreError(str(exc)) from None
    except OSError as exc:
        raise ExploreError(f"cannot write {directory / name}: {exc.strerror or exc}") from None
    return directory / name


def write_new_file(path: Path, text: str) -> Path:
    """Create `path` with `text`; an existing file (or symlink) there is refused, naming the remedy."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        raise ExploreError(f"{path} already exists; pass another --output (K2 never overwrites it)") from None
    except OSError as exc:
        raise ExploreError(f"cannot create {path}: {exc.strerror}; check that its directory exists") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return path


def read_json(path: Path, what: str = "report", max_bytes: int = MAX_REPORT_BYTES) -> Any:
    """The JSON in `path` (a regular file of at most `max_bytes`); NaN and Infinity are refused."""
    try:
        link = path.lstat()
    except OSError as exc:
        raise ExploreError(f"{what} {path}: {exc.strerror}; pass the report.json an explore run wrote") from None
    if stat.S_ISLNK(link.st_mode) and link.st_uid != os.geteuid():
        raise ExploreError(f"{what} {path} is a symlink owned by uid {link.st_uid}, not by you; pass the real file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        reason = "a loop of symlinks" if exc.errno == errno.ELOOP else exc.strerror
        raise ExploreError(f"{what} {path}: {reason}; pass the report.json an explore run wrote") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ExploreError(f"{what} {path} is not a regular file; pass the report.json an explore run wrote")
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > max_bytes:
            raise ExploreError(f"{what} {path} is {info.st_size} bytes, more than {max_bytes}; is it a report?")
        data = handle.read(max_bytes + 1)
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ExploreError(
            f"{what} {path} is not valid JSON ({exc}); pass the report.json an explore run wrote"
        ) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
