"""Durable registry state: an append-only JSON-lines log, fsynced per write, replayed at start.

Why a log and not SQLite: the state is tiny (schemas, versions, configs) and changes rarely, so a
log of operations is the whole database; each write is one append + fsync, a crash can only leave a
torn *last* line (detected by its missing newline, then cut off at start), and the file is readable
with `cat` when debugging a chaos run. Ids are written into the log, so replay can never renumber.

Failure handling, for the chaos suite: a failed append (disk full, EIO) is truncated back so the log
stays well-formed and the in-memory state is untouched; if even that fails the store refuses every
further write until restart. A complete line that does not parse is corruption: start-up refuses
with the line number rather than silently dropping schemas. One process per data dir, enforced with
an exclusive flock, so a zombie and its replacement can never interleave writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k2.platform.errors import InvalidSchema, RegistryStorageError
from k2.platform.registry.compat import CompatibilityLevel
from k2.platform.registry.schema import AvroSchema, parse_avro

__all__ = ["LOG_NAME", "RegistryState", "SchemaRecord", "Store", "VersionRecord"]

log = logging.getLogger(__name__)
LOG_NAME = "registry.jsonl"
LOCK_NAME = "registry.lock"


@dataclass
class SchemaRecord:
    id: int
    schema: AvroSchema
    guid: str


@dataclass
class VersionRecord:
    subject: str
    version: int
    schema_id: int
    deleted: bool = False


class RegistryState:
    """In-memory state; changed only by `apply`, so a replay rebuilds exactly what was served."""

    def __init__(self) -> None:
        self.schemas: dict[int, SchemaRecord] = {}
        self.by_canonical: dict[str, int] = {}
        self.by_guid: dict[str, int] = {}
        self.subjects: dict[str, dict[int, VersionRecord]] = {}
        self.configs: dict[str, CompatibilityLevel] = {}
        self.global_level: CompatibilityLevel | None = None
        self.next_id = 1

    def apply(self, op: dict[str, Any]) -> None:
        kind = op["op"]
        if kind == "schema":
            record = SchemaRecord(op["id"], parse_avro(op["schema"]), op["guid"])
            self.schemas[record.id] = record
            self.by_canonical.setdefault(record.schema.canonical, record.id)
            self.by_guid[record.guid] = record.id
            self.next_id = max(self.next_id, record.id + 1)
        elif kind == "version":
            versions = self.subjects.setdefault(op["subject"], {})
            versions[op["version"]] = VersionRecord(op["subject"], op["version"], op["id"])
        elif kind == "soft_delete":
            self.subjects[op["subject"]][op["version"]].deleted = True
        elif kind == "hard_delete":
            versions = self.subjects[op["subject"]]
            del versions[op["version"]]
            if not versions:
                del self.subjects[op["subject"]]
        elif kind == "config":
            level = CompatibilityLevel(op["level"]) if op["level"] is not None else None
            if op["subject"] is None:
                self.global_level = level
            elif level is None:
                self.configs.pop(op["subject"], None)
            else:
                self.configs[op["subject"]] = level
        else:
            raise ValueError(f"unknown operation {kind!r}")


class _Log:
    """The append-only file; see the module docstring for the crash and failure rules."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOG_NAME
        self._lock_fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self._lock_fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._lock_fd)
            raise RegistryStorageError(
                f"data dir {data_dir} is in use by another registry process (pid {holder})",
                remedy="stop that process first, or give this registry its own --data-dir",
            ) from None
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, f"{os.getpid()}\n".encode(), 0)
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.fchmod(self._fd, 0o600)  # the schemas are the owner's; a log made before this fix gets it too
        if created:
            _fsync_dir(data_dir)
        self._size = os.fstat(self._fd).st_size
        self._broken: OSError | None = None

    def replay(self) -> Iterator[list[dict[str, Any]]]:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            log.warning("schema log %s: discarding a torn last line of %d bytes", self.path, len(data) - end)
            os.ftruncate(self._fd, end)
            os.fsync(self._fd)
            self._size = end
        for number, line in enumerate(data[:end].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                ops = entry["ops"]
            except (ValueError, KeyError, TypeError) as exc:
                raise RegistryStorageError(
                    f"schema log {self.path} is corrupt at line {number}: {exc}",
                    remedy=f"restore the file from a backup, or move it aside (lines 1-{number - 1} are intact)",
                ) from None
            yield ops

    def append(self, ops: list[dict[str, Any]]) -> None:
        if self._broken is not None:
            raise RegistryStorageError(
                f"schema log {self.path} is unusable after an earlier write error ({self._broken})",
                remedy="fix the disk problem and restart the registry; it will discard the torn tail",
            )
        data = (json.dumps({"ops": ops}, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, self._size)
                os.fsync(self._fd)
            except OSError as again:
                self._broken = again
            raise RegistryStorageError(
                f"could not write schema log {self.path}: {exc}",
                remedy="free disk space or fix permissions on the data dir, then retry the request",
            ) from exc
        self._size += len(data)

    def close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Store:
    """State + log behind one lock: every mutation is logged durably, then applied."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryStorageError(
                f"cannot create data dir {self.data_dir}: {exc}", remedy="pick a writable --data-dir"
            ) from exc
        self.lock = threading.RLock()
        self.state = RegistryState()
        self._log = _Log(self.data_dir)
        count = 0
        try:
            for ops in self._log.replay():
                for op in ops:
                    self.state.apply(op)
                count += 1
        except RegistryStorageError:
            self._log.close()
            raise
        except (KeyError, ValueError, TypeError, InvalidSchema) as exc:
            self._log.close()
            raise RegistryStorageError(
                f"schema log {self._log.path} does not replay after {count} entries: {exc!r}",
                remedy="restore the data dir from a backup; the log was changed by something other than k2",
            ) from exc
        log.info(
            "replayed %d log entries from %s: %d schemas, %d subjects",
            count,
            self._log.path,
            len(self.state.schemas),
            len(self.state.subjects),
        )

    def commit(self, ops: list[dict[str, Any]]) -> None:
        """Durably append `ops` as one entry, then apply them; nothing changes if the write fails."""
        with self.lock:
            self._log.append(ops)
            for op in ops:
                self.state.apply(op)

    def close(self) -> None:
        with self.lock:
            self._log.close()
