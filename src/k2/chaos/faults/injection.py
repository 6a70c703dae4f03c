"""One injection of a fault spec through a session: journal -> inject -> verify -> hold -> restore -> verify.

`session.inject(spec)` returns an `Injection` already applied, its timer running; use it with `with`.
The outage lasts `duration_s` (None: until the block exits): a body that ends early waits out the rest;
a body that outlives the duration continues against the restored service; an exception, Ctrl-C or
SIGTERM restores at once. Restoring is idempotent, and the journal restores it if the runner dies.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from k2.chaos.effects import Effect
from k2.chaos.errors import ChaosError, InjectionFailed
from k2.chaos.faults.spec import FaultSpec
from k2.chaos.targets.base import Target
from k2.chaos.targets.capabilities import Probe

if TYPE_CHECKING:
    from k2.chaos.journal import Journal


class Host(Protocol):
    """What an injection needs of the session it was made by."""

    def require_journal(self) -> Journal: ...
    def ended(self, handle: Injection) -> None: ...


__all__ = ["FaultRecord", "Injection", "Terminated"]

log = logging.getLogger(__name__)


class Terminated(BaseException):
    """SIGTERM arrived while a fault was held; a BaseException so `except Exception` cannot swallow it."""


@dataclass
class FaultRecord:
    """One fault as it happened: for reports and for the checker's timeline. `notes` holds what the
    scenario measured about it (e.g. throughput with and without the fault)."""

    kind: str
    target: str
    params: dict[str, Any]
    duration_s: float | None
    journal_id: str | None = None
    injected_at: float | None = None  # wall clock
    restored_at: float | None = None
    effect: Effect | None = None
    restore_effect: Effect | None = None
    error: str | None = None
    primitive: str | None = None  # the target primitive that injected it (e.g. pause, kill): its mode
    notes: dict[str, Any] = field(default_factory=dict)


class Injection:
    """The handle of one applied fault: its journal id, timer, record and measured effects."""

    def __init__(self, session: Host, spec: FaultSpec[Any], target: Target, probe: Probe | None) -> None:
        self.session, self.spec, self.target, self.probe = session, spec, target, probe
        self.record = FaultRecord(spec.kind, spec.target, spec.parameters(), spec.duration_s, primitive=spec.primitive)
        self._lock = threading.Lock()
        self._restored = threading.Event()
        self._timer: threading.Timer | None = None
        self._previous_sigterm: Any = None
        self._in_place = 0.0  # monotonic time the effect was verified: the outage's `duration_s` counts from it

    def __repr__(self) -> str:
        return repr(self.spec)

    @property
    def journal_id(self) -> str | None:
        return self.record.journal_id

    @property
    def effect(self) -> Effect | None:
        return self.record.effect

    @property
    def restore_effect(self) -> Effect | None:
        return self.record.restore_effect

    @property
    def active(self) -> bool:
        return self.record.journal_id is not None and not self._restored.is_set()

    def wait(self, timeout: float | None) -> bool:
        """Block until the fault is restored (by its timer, another thread or `restore`) or `timeout` s pass;
        whether it was restored. With no duration it ends only when someone restores it."""
        return self._restored.wait(timeout)

    def note(self, **observations: Any) -> None:
        """Add what the scenario observed about this fault to its record (and so to the reports)."""
        self.record.notes.update(observations)

    # -- called by the session ---------------------------------------------------------------------

    def _apply(self) -> None:
        journal = self.session.require_journal()
        started = time.time()
        entry_id = journal.begin(self.target, self.spec.primitive, self.spec.arguments(), fault=self.spec.kind)
        try:
            effect = self.spec.apply(self.target, self.probe)
        except BaseException as exc:
            self.record.error = f"inject: {exc}"
            journal.note_error(entry_id, "inject", exc)
            try:  # a half-applied fault is undone before the error surfaces
                journal.restore(entry_id, self.target)
            except Exception as undo:
                log.error("%r: undo after a failed inject also failed (journal keeps it pending): %s", self, undo)
            if isinstance(exc, Exception) and not isinstance(exc, ChaosError):
                raise InjectionFailed(f"{self!r} could not be applied: {exc}") from exc
            raise
        journal.activate(entry_id, effect, self.target)
        self.record.journal_id, self.record.injected_at, self.record.effect = entry_id, started, effect
        log.info("injected %r: %s", self, effect.summary())
        self._in_place = time.monotonic()
        if self.spec.duration_s is not None:
            self._timer = threading.Timer(self.spec.duration_s, self._restore_on_time)
            self._timer.daemon = True
            self._timer.start()

    # -- restore -----------------------------------------------------------------------------------

    def restore(self) -> Effect | None:
        """Undo the fault (once; later calls return None)."""
        with self._lock:
            if self._restored.is_set() or self.record.journal_id is None:
                return None
            journal = self.session.require_journal()
            try:
                effect = journal.restore(self.record.journal_id, self.target, undo=self._undo)
            except BaseException as exc:
                self.record.error = f"restore: {exc}"
                raise
            self.record.restored_at = time.time()
            self.record.restore_effect = effect
            self._restored.set()
        self.session.ended(self)
        log.info("restored %r after %.2fs", self, self.record.restored_at - (self.record.injected_at or 0))
        return effect

    def _undo(self, target: Target) -> Effect:
        return self.spec.undo(target, self.probe)

    def _restore_on_time(self) -> None:
        try:
            self.restore()
        except Exception as exc:  # the block's exit (or the watchdog) will retry
            log.error("%r: timed restore failed: %s", self, exc)

    # -- with --------------------------------------------------------------------------------------

    def __enter__(self) -> Injection:
        if threading.current_thread() is threading.main_thread():

            def on_sigterm(signum: int, frame: FrameType | None) -> None:
                raise Terminated(f"SIGTERM while {self!r} was held; restoring")

            self._previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None and self.spec.duration_s is not None and self.record.injected_at is not None:
                # The outage lasts its full duration, from when it was verified, even when the body is done early.
                remaining = self._in_place + self.spec.duration_s - time.monotonic()
                if remaining > 0:
                    self._restored.wait(remaining)
        finally:
            if self._timer is not None:
                self._timer.cancel()
            try:
                self.restore()
            finally:
                if self._previous_sigterm is not None:
                    signal.signal(signal.SIGTERM, self._previous_sigterm)
                    self._previous_sigterm = None
