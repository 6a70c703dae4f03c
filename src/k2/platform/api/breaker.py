"""A circuit breaker around the query API's storage calls: closed -> open -> half-open -> closed.

Why not a library: pybreaker holds its lock for the whole guarded call (every query would wait for
the one before it, and a hung storage call would block even the fail-fast answers) and times the open
state with the wall clock; `circuitbreaker` lets every caller through once the open time is over. A
breaker must fail fast while storage is down, let exactly ONE probe through when the open time is up,
and keep its timing on the monotonic clock, so a clock jump on the API host neither closes it early
nor keeps it open for an hour (the clock-skew chaos checks exactly that).

    breaker = CircuitBreaker(failure_threshold=5, reset_timeout=5.0)
    with breaker.guard(is_failure=lambda exc: isinstance(exc, StorageUnavailable)):
        engine.vwap(...)           # raises BreakerOpen (with retry_after) instead while open
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["BreakerOpen", "BreakerState", "CircuitBreaker"]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class BreakerOpen(Exception):
    """Refused without touching storage; `retry_after` is when the next probe may go (seconds)."""

    def __init__(self, retry_after: float, reason: str) -> None:
        self.retry_after = retry_after
        super().__init__(reason)


@dataclass(frozen=True)
class BreakerState:
    state: str
    consecutive_failures: int
    retry_after: float  # 0 unless open
    opened: int  # how many times it opened since start
    closed: int  # how many times it closed again after opening
    rejected: int  # calls refused without touching storage


class CircuitBreaker:
    """Opens after `failure_threshold` consecutive failures; after `reset_timeout` seconds one probe goes
    through (half-open): success closes it, failure opens it for another `reset_timeout`. Thread-safe; the
    lock is held only to change state, never during the guarded call."""

    def __init__(
        self, failure_threshold: int = 5, reset_timeout: float = 5.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold={failure_threshold}: give at least 1")
        if not 0 < reset_timeout <= 3600:
            raise ValueError(f"reset_timeout={reset_timeout}: give 0 < seconds <= 3600")
        self.failure_threshold, self.reset_timeout = failure_threshold, reset_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._counts = {"opened": 0, "closed": 0, "rejected": 0}

    def snapshot(self) -> BreakerState:
        with self._lock:
            retry = self._retry_after() if self._state != CLOSED else 0.0
            return BreakerState(self._state, self._failures, retry, **self._counts)

    @contextmanager
    def guard(self, is_failure: Callable[[BaseException], bool]) -> Iterator[None]:
        """Run the block as one call through the breaker. Exceptions the predicate calls failures count
        toward opening; others (bad input) pass through and count as neither success nor failure."""
        probe = self._admit()
        try:
            yield
        except BaseException as exc:
            if is_failure(exc):
                self._record_failure(probe)
            else:
                self._release(probe)
            raise
        self._record_success()

    # ---- transitions, all under the lock -----------------------------------------------------------

    def _admit(self) -> bool:
        """True when this call is the half-open probe; raises BreakerOpen when the call must not go."""
        with self._lock:
            if self._state == CLOSED:
                return False
            if self._state == OPEN and self._clock() - self._opened_at >= self.reset_timeout:
                self._state = HALF_OPEN
            if self._state == HALF_OPEN and not self._probing:
                self._probing = True
                return True
            self._counts["rejected"] += 1
            why = "a probe of storage is in flight" if self._state == HALF_OPEN else "storage failed repeatedly"
            raise BreakerOpen(self._retry_after(), f"circuit open: {why}")

    def _retry_after(self) -> float:
        if self._state == HALF_OPEN:  # the probe decides soon; come back shortly
            return min(1.0, self.reset_timeout)
        return max(0.0, self._opened_at + self.reset_timeout - self._clock())

    def _record_failure(self, probe: bool) -> None:
        with self._lock:
            self._failures += 1
            if probe:
                self._probing = False
            if probe or (self._state == CLOSED and self._failures >= self.failure_threshold):
                if self._state == CLOSED:
                    self._counts["opened"] += 1
                self._state, self._opened_at = OPEN, self._clock()

    def _record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._probing = False
            if self._state != CLOSED:
                self._state = CLOSED
                self._counts["closed"] += 1

    def _release(self, probe: bool) -> None:
        """A call that proved nothing about storage (bad input): a probe slot is freed for the next caller."""
        if probe:
            with self._lock:
                self._probing = False
