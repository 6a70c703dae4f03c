"""The seed's call shape: `with service_failure("kafka", duration_seconds=5, mode="pause") as fault:`.

A `Fault` is a spec plus the session to inject it through (by default the innermost open one). Each
`with` injects the spec anew and restores exactly what it injected, so one Fault object can be used
any number of times; entering it while its previous injection still holds is refused by the session
(the service is already under that fault).
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

from k2.chaos.faults.context import Injector, current_session
from k2.chaos.faults.injection import FaultRecord, Injection
from k2.chaos.faults.spec import FaultSpec

if TYPE_CHECKING:
    from k2.chaos.targets.base import Target

__all__ = ["Fault"]


class Fault:
    """`spec` bound to `session` (None: the innermost open session when it is injected). `target` is the
    handle the caller named, when it gave one instead of a service name: the session must have declared
    exactly that target, or it refuses."""

    def __init__(self, spec: FaultSpec[Any], *, session: Injector | None = None, target: Target | None = None):
        self.spec, self.session, self.named = spec, session, target
        self._entered: list[Injection] = []
        self._lock = threading.Lock()
        self.last: Injection | None = None

    def __repr__(self) -> str:
        return repr(self.spec)

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def record(self) -> FaultRecord | None:
        """The record of the latest injection (None before the first)."""
        return None if self.last is None else self.last.record

    def inject(self) -> Injection:
        """Inject now, without `with`: the caller restores (`.restore()` on the handle, or the session does)."""
        session = self.session or current_session()
        handle = session.inject(self.spec, named=self.named)
        self.last = handle
        return handle

    def __enter__(self) -> Injection:
        handle = self.inject()
        with self._lock:
            self._entered.append(handle)
        return handle.__enter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            handle = self._entered.pop()
        handle.__exit__(exc_type, exc, tb)
