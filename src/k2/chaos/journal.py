"""Crash-safe record of active faults, so a fault outlives nothing that injected it.

An append-only JSON-lines file; every line is a full snapshot of one entry, the last line for an
id wins. A line is fsynced (file, and directory for "injecting") BEFORE the fault is injected, so
after any crash the journal names every fault that might be applied and how to undo it:
the target's `describe()` and the inverse primitive. `recover()` rebuilds each target from that
alone and calls the inverse (idempotent, so an entry whose effect never landed is safe too).

One runner per journal: the file is held with `fcntl.flock` for the journal's lifetime (the lock
dies with the process, which is how the watchdog knows it may recover).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from k2.chaos.effects import Effect
from k2.chaos.errors import ChaosError, InvalidFault, RestoreFailed
from k2.chaos.targets import INVERSES, Target, target_from_description
from k2.chaos.targets.base import wait_until
from k2.chaos.targets.process import proc_stat

__all__ = ["Entry", "Journal", "JournalBusy", "PendingFaults", "read_entries", "read_journal"]

log = logging.getLogger(__name__)

INJECTING, ACTIVE, RESTORED = "injecting", "active", "restored"


class JournalBusy(ChaosError):
    """Another runner holds the journal."""


class PendingFaults(ChaosError):
    """A previous run left faults applied; this run refuses to start until they are restored."""

    def __init__(self, path: Path, pending: list[Entry]) -> None:
        self.path, self.pending = path, pending
        names = "; ".join(e.summary() for e in pending)
        super().__init__(
            f"journal {path} has {len(pending)} fault(s) still applied from an earlier run: {names}. "
            f"Run `k2 chaos recover --journal {path}` (or open the journal with recover=True) first"
        )


@dataclass
class Entry:
    """One fault's life: injecting -> active -> restored (anything else is still pending)."""

    id: str
    status: str
    primitive: str
    inverse: str
    target: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    fault: str | None = None
    runner_pid: int = 0
    runner_starttime: int = 0  # the runner's kernel start time: with the pid, proof it is still that process
    created_at: float = 0.0
    updated_at: float = 0.0
    effect: dict[str, Any] | None = None
    restore: dict[str, Any] | None = None
    error: str | None = None

    @property
    def pending(self) -> bool:
        return self.status != RESTORED

    def summary(self) -> str:
        name = self.target.get("name", "?")
        return f"{self.fault or self.primitive} on {name} ({self.status}, id {self.id})"


_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "id": str, "status": str, "primitive": str, "inverse": str, "target": dict, "params": dict,
    "fault": (str, type(None)), "runner_pid": int, "runner_starttime": int, "created_at": (int, float),
    "updated_at": (int, float), "effect": (dict, type(None)), "restore": (dict, type(None)),
    "error": (str, type(None)),
}  # fmt: skip


def _entry_of(record: Any) -> Entry:
    """An Entry from one parsed line, or TypeError saying which field is wrong."""
    if not isinstance(record, dict):
        raise TypeError(f"the line holds {type(record).__name__}, not a JSON object")
    record.pop("ts", None)
    unknown = set(record) - set(_FIELD_TYPES)
    if unknown:
        raise TypeError(f"unknown field(s) {', '.join(sorted(unknown))}")
    for name in ("id", "status", "primitive", "inverse", "target"):
        if name not in record:
            raise TypeError(f"field {name!r} is missing")
    for name, value in record.items():
        if isinstance(value, bool) or not isinstance(value, _FIELD_TYPES[name]):
            raise TypeError(f"field {name!r} is {type(value).__name__}")
    return Entry(**record)


def read_journal(path: str | os.PathLike[str]) -> tuple[dict[str, Entry], list[str]]:
    """(every entry's latest state in order of creation, a problem per unreadable line); needs no lock.

    A torn last line (a crash mid-write) is expected and not a problem: its entry's previous line still
    stands, and the line before "injecting" was fsynced, so no injected fault can be lost this way.
    Any other unreadable line is a problem naming the file, the line and the remedy; the rest is read.
    """
    entries: dict[str, Entry] = {}
    problems: list[str] = []
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return entries, problems
    lines = data.split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = _entry_of(json.loads(line))
        except (ValueError, TypeError, RecursionError) as exc:
            if number >= len(lines) - 1 and not line.endswith(b"}"):
                log.debug("journal %s line %d torn by a crash, skipped", path, number)
                continue
            problems.append(
                f"journal {path} line {number} is not a fault record ({exc}), skipped; the other entries are "
                "restored. If a fault of that line is still applied, undo it by hand, then remove the line."
            )
            log.warning("%s", problems[-1])
            continue
        entries[entry.id] = entry
    return entries, problems


def read_entries(path: str | os.PathLike[str]) -> dict[str, Entry]:
    """Every entry's latest state, in order of creation (see `read_journal`)."""
    return read_journal(path)[0]


def _own_starttime() -> int:
    stat = proc_stat(os.getpid())
    return stat.starttime if stat is not None else 0


class Journal:
    """The journal at `path`, locked for this process. Raises `PendingFaults` if an earlier run left
    faults applied, unless `recover=True` (then call `recover()`); `JournalBusy` if another runner
    holds it after `lock_timeout` seconds."""

    def __init__(self, path: str | os.PathLike[str], *, recover: bool = False, lock_timeout: float = 0.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._mutex = threading.Lock()  # faults injected from several threads share one journal
        try:
            if not wait_until(self._try_lock, lock_timeout, cap=0.05):
                raise JournalBusy(
                    f"journal {self.path} is held by another K2 runner (see `fuser {self.path}`); "
                    "wait for it to finish, or give each runner its own journal"
                )
            if created:
                self._fsync_dir()
            self._seal_torn_tail()
            self._entries, self.problems = read_journal(self.path)
            pending = self.pending()
            if pending and not recover:
                raise PendingFaults(self.path, pending)
            if self._entries and not pending:
                self._compact()
        except BaseException:
            os.close(self._fd)
            raise

    def _seal_torn_tail(self) -> None:
        """End a line torn by a crash, so the next record does not splice onto it."""
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            os.write(self._fd, b"\n")
            os.fsync(self._fd)

    def _compact(self) -> None:
        """Start empty when every fault of earlier runs is restored: the journal guards what is applied
        now, so it stays as small as one run's faults (the reports keep the history)."""
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)
        self._entries = {}

    def _try_lock(self) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        """Release the lock. Pending entries stay in the file for the next run."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------

    def entries(self) -> dict[str, Entry]:
        return dict(self._entries)

    def pending(self) -> list[Entry]:
        """Entries not known to be restored, oldest first."""
        return [e for e in self._entries.values() if e.pending]

    # -- writing -------------------------------------------------------------------------

    def begin(
        self, target: Target, primitive: str, params: dict[str, Any] | None = None, *, fault: str | None = None
    ) -> str:
        """Record (durably) that `primitive` is about to be applied to `target`; returns the entry id.
        Call it BEFORE injecting."""
        inverse = INVERSES.get(primitive)
        if inverse is None:
            raise InvalidFault(f"no inverse known for primitive {primitive!r}; known: {sorted(INVERSES)}")
        now = time.time()
        entry = Entry(
            id=f"{int(now * 1000):x}-{uuid.uuid4().hex[:8]}",
            status=INJECTING,
            primitive=primitive,
            inverse=inverse,
            target=target.describe(),
            params=dict(params or {}),
            fault=fault,
            runner_pid=os.getpid(),
            runner_starttime=_own_starttime(),
            created_at=now,
            updated_at=now,
        )
        with self._mutex:
            self._write(entry, sync_dir=True)
        return entry.id

    def activate(self, entry_id: str, effect: Effect, target: Target | None = None) -> None:
        """Record that the fault is applied, with its measured effect (and the target's state now,
        which may hold what an exact undo needs)."""
        self._update(entry_id, ACTIVE, target, effect=effect.to_dict())

    def mark_restored(self, entry_id: str, effect: Effect | None, target: Target | None = None) -> None:
        self._update(entry_id, RESTORED, target, restore=None if effect is None else effect.to_dict(), error=None)

    def note_error(self, entry_id: str, phase: str, error: BaseException) -> None:
        """Record a failed inject or restore; the entry stays pending so recovery will undo it."""
        entry = self._entries[entry_id]
        self._update(entry_id, entry.status, None, error=f"{phase}: {type(error).__name__}: {error}")

    def _update(self, entry_id: str, status: str, target: Target | None, **changes: Any) -> None:
        described = None if target is None else target.describe()
        with self._mutex:
            entry = replace(self._entries[entry_id])  # shallow: stored entries' dicts are replaced, never mutated
            entry.status, entry.updated_at = status, time.time()
            if described is not None:
                entry.target = described
            for key, value in changes.items():
                setattr(entry, key, value)
            self._write(entry, sync_dir=False)

    def _write(self, entry: Entry, *, sync_dir: bool) -> None:
        if self._fd < 0:
            raise ChaosError(f"journal {self.path} is closed; open a new Journal to record faults")
        # Shallow: json.dumps walks the nested dicts itself (a deep copy per line cost ~100 µs a transition).
        record = {**{f.name: getattr(entry, f.name) for f in fields(entry)}, "ts": entry.updated_at}
        if sync_dir:  # before injection: what recovery needs must be real JSON, not str() of it
            try:
                line = json.dumps(record, sort_keys=True)
            except (TypeError, ValueError) as exc:
                raise InvalidFault(
                    f"{entry.summary()}: its description or parameters are not JSON ({exc}); "
                    "a fault must be journaled as plain data before it is injected"
                ) from exc
        else:  # after injection: a measurement that is not JSON must not fail the fault
            line = json.dumps(record, sort_keys=True, default=str)
        data = (line + "\n").encode()
        # O_APPEND and one write(): a crash leaves at most a torn last line, never a spliced one.
        written = os.write(self._fd, data)
        if written != len(data):
            raise ChaosError(f"journal {self.path}: short write ({written}/{len(data)} bytes); check free disk")
        os.fsync(self._fd)
        if sync_dir:
            self._fsync_dir()
        self._entries[entry.id] = entry

    def _fsync_dir(self) -> None:
        fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- inject / restore / recover ------------------------------------------------------

    def inject(
        self,
        target: Target,
        primitive: str,
        params: dict[str, Any] | None = None,
        *,
        fault: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[str, Effect]:
        """Journal, then apply `target.<primitive>(**params, **options)`; `options` (probes,
        timeouts) are not journaled. If applying fails the entry stays pending: call `restore`."""
        entry_id = self.begin(target, primitive, params, fault=fault)
        try:
            effect: Effect = getattr(target, primitive)(**(params or {}), **(options or {}))
        except BaseException as exc:
            self.note_error(entry_id, "inject", exc)
            raise
        self.activate(entry_id, effect, target)
        return entry_id, effect

    def restore(
        self, entry_id: str, target: Target | None = None, *, undo: Callable[[Target], Effect] | None = None
    ) -> Effect:
        """Undo the entry (on `target`, else one rebuilt from the journal) and mark it restored: with `undo`
        (the live fault's own inverse, with its probe), else by calling the entry's inverse by name."""
        entry = self._entries[entry_id]
        if target is None:
            target = target_from_description(entry.target)
        try:
            effect: Effect = undo(target) if undo is not None else getattr(target, entry.inverse)()
        except BaseException as exc:
            self.note_error(entry_id, "restore", exc)
            raise
        self.mark_restored(entry_id, effect, target)
        return effect

    def recover(self) -> list[Entry]:
        """Undo every pending entry from the journal alone, newest first; returns them as restored.

        Safe to run twice and on entries whose effect never landed (every inverse is idempotent).
        Tries every entry, then raises `RestoreFailed` naming those that could not be undone.
        """
        done: list[Entry] = []
        failures: list[str] = []
        for entry in reversed(self.pending()):
            t0 = time.monotonic()
            try:
                self.restore(entry.id)
            except Exception as exc:
                log.error("recover: %s failed: %s", entry.summary(), exc)
                failures.append(f"{entry.summary()}: {exc}")
                continue
            log.info("recover: restored %s in %.3fs", entry.summary(), time.monotonic() - t0)
            done.append(self._entries[entry.id])
        if failures:
            raise RestoreFailed(
                f"journal {self.path}: {len(failures)} fault(s) could not be restored: {'; '.join(failures)}. "
                "Fix the cause and run `k2 chaos recover` again"
            )
        return done
