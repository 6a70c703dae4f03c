"""Which chaos session a fault built without one goes through: the innermost open one.

Kept apart from `k2.chaos.session` so that faults need not import the session (nor it them, beyond the
handle it returns).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from k2.chaos.errors import ChaosError

if TYPE_CHECKING:
    from k2.chaos.faults.injection import Injection
    from k2.chaos.faults.spec import FaultSpec
    from k2.chaos.targets.base import Target

__all__ = ["Injector", "closed", "current_session", "no_session", "opened"]


class Injector(Protocol):
    def inject(self, spec: FaultSpec[Any], *, named: Target | None = None) -> Injection: ...


_open: list[Injector] = []
_lock = threading.Lock()


def opened(session: Injector) -> None:
    with _lock:
        _open.append(session)


def closed(session: Injector) -> None:
    with _lock:
        if session in _open:
            _open.remove(session)


def current_session() -> Injector:
    """The innermost open session; faults built without one use it."""
    with _lock:
        if _open:
            return _open[-1]
    raise ChaosError(
        "no chaos session is open: open one with `with k2.testing.chaos_session(stack):` (or the pytest "
        "plugin's fixtures) so every fault is journaled and restored"
    )


@contextmanager
def no_session() -> Iterator[None]:
    """For tests of session handling: temporarily hide open sessions."""
    with _lock:
        saved = list(_open)
        _open.clear()
    try:
        yield
    finally:
        with _lock:
            _open[:] = saved
