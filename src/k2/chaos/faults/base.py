"""The Fault contract: validate when built -> journal -> inject -> verify -> hold -> restore -> verify.

`with fault:` injects on entry. The outage lasts `duration_seconds` (None: until the block exits):
a body that ends early waits out the rest; a body that outlives the duration continues against the
restored service; an exception, Ctrl-C or SIGTERM restores at once. Restoring is idempotent.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from abc import ABC, abstractmethod
from types import FrameType, TracebackType
from typing import Any, ClassVar

from k2.chaos.errors import ChaosError, InjectionFailed, InvalidFault
from k2.chaos.session import ChaosSession, FaultRecord, current_session
from k2.chaos.targets import Effect, Target

log = logging.getLogger(__name__)

MAX_DURATION_S = 24 * 3600


class Terminated(BaseException):
    """SIGTERM arrived while a fault was held; a BaseException so `except Exception` cannot swallow it."""


def validate_duration(value: object, what: str = "duration_seconds") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InvalidFault(f"{what}={value!r}: give a number of seconds (or None to hold until the block exits)")
    if value <= 0:
        raise InvalidFault(f"{what}={value} must be positive: give the outage length in seconds")
    if value > MAX_DURATION_S:
        raise InvalidFault(f"{what}={value} is more than a day: chaos faults are meant to end; give a shorter one")
    return float(value)


class Fault(ABC):
    """One kind of fault. Subclasses set `kind`, validate their parameters in __init__ and say which
    target primitive injects them (the journal knows its inverse)."""

    kind: ClassVar[str]
    registry: ClassVar[dict[str, type[Fault]]] = {}
    facet: ClassVar[str] = "process"  # network faults act on the service's fault proxy, disk faults on its disk

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            Fault.registry[cls.kind] = cls

    def __init__(
        self, target: Target | str, duration_seconds: float | None, *, session: ChaosSession | None = None
    ) -> None:
        if not isinstance(target, str) and not hasattr(target, "describe"):
            raise InvalidFault(f"{self.kind}: target {target!r} is neither a service name nor a chaos target")
        self.target_ref = target
        self.duration = validate_duration(duration_seconds)
        self._session = session
        self._lock = threading.Lock()
        self._restored = threading.Event()
        self._timer: threading.Timer | None = None
        self._previous_sigterm: Any = None
        self.target: Target | None = None
        self.record = FaultRecord(self.kind, self._target_name(), {}, self.duration)

    # -- what a subclass provides ------------------------------------------------------------

    @property
    @abstractmethod
    def primitive(self) -> str:
        """The target primitive that injects this fault."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Journaled parameters of the primitive (JSON-able)."""

    def options(self, session: ChaosSession, target: Target) -> dict[str, Any]:
        """Non-journaled arguments of the primitive (probes, timeouts)."""
        return {}

    def restore_options(self, session: ChaosSession, target: Target) -> dict[str, Any]:
        """Non-journaled arguments of the inverse (a recovery from the journal alone goes without them)."""
        return {}

    # -- lifecycle ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._target_name()!r}, {self.params()}, duration={self.duration})"

    def _target_name(self) -> str:
        return self.target_ref if isinstance(self.target_ref, str) else str(getattr(self.target_ref, "name", "?"))

    def inject(self) -> Effect:
        session = self._session = self._session or current_session()
        target = self.target = session.resolve(self.target_ref, facet=self.facet)
        journal = session.require_journal()
        self.record.params = self.params()
        self.record.primitive = self.primitive
        started = time.time()
        entry_id = journal.begin(target, self.primitive, self.record.params, fault=self.kind)
        try:
            effect: Effect = getattr(target, self.primitive)(**self.record.params, **self.options(session, target))
        except BaseException as exc:
            self.record.error = f"inject: {exc}"
            journal.note_error(entry_id, "inject", exc)
            try:  # a half-applied fault is undone before the error surfaces
                journal.restore(entry_id, target)
            except Exception as undo:
                log.error("%r: undo after a failed inject also failed (journal keeps it pending): %s", self, undo)
            if isinstance(exc, Exception) and not isinstance(exc, ChaosError):
                raise InjectionFailed(f"{self!r} could not be applied: {exc}") from exc
            raise
        journal.activate(entry_id, effect, target)
        self.record.journal_id = entry_id
        self.record.injected_at = started
        self.record.effect = effect.measured
        session.started(self)
        log.info("injected %r: %s", self, effect.measured)
        return effect

    def restore(self) -> Effect | None:
        """Undo the fault (once; later calls return None)."""
        with self._lock:
            if self._restored.is_set() or self.record.journal_id is None:
                return None
            assert self._session is not None and self.target is not None
            try:
                journal = self._session.require_journal()
                options = self.restore_options(self._session, self.target)
                effect = journal.restore(self.record.journal_id, self.target, **options)
            except BaseException as exc:
                self.record.error = f"restore: {exc}"
                raise
            self.record.restored_at = time.time()
            self.record.restore_effect = effect.measured
            self._restored.set()
        self._session.ended(self)
        log.info("restored %r after %.2fs", self, self.record.restored_at - (self.record.injected_at or 0))
        return effect

    @property
    def active(self) -> bool:
        return self.record.journal_id is not None and not self._restored.is_set()

    def __enter__(self) -> Fault:
        self._install_sigterm()
        try:
            self.inject()
        except BaseException:
            self._uninstall_sigterm()
            raise
        if self.duration is not None:
            self._timer = threading.Timer(self.duration, self._restore_on_time)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None and self.duration is not None and self.record.injected_at is not None:
                # The outage lasts its full duration even when the body is done early.
                remaining = self.record.injected_at + self.duration - time.time()
                if remaining > 0:
                    self._restored.wait(remaining)
        finally:
            if self._timer is not None:
                self._timer.cancel()
            try:
                self.restore()
            finally:
                self._uninstall_sigterm()

    def _restore_on_time(self) -> None:
        try:
            self.restore()
        except Exception as exc:  # the block's exit (or the watchdog) will retry
            log.error("%r: timed restore failed: %s", self, exc)

    def _install_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            raise Terminated(f"SIGTERM while {self!r} was held; restoring")

        self._previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)

    def _uninstall_sigterm(self) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
