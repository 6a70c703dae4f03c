"""Time bounds inside scenarios: detecting an outage too late is not detecting it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def within(seconds: float, what: str) -> Iterator[None]:
    """Fail (AssertionError) when the body took longer than `seconds`, whether it returned or raised: a typed
    error that arrives after the caller's deadline is a failure to detect the outage in time, so it replaces
    the error (the scenario becomes a CRASH instead of FAILED_GRACEFULLY)."""
    started = time.monotonic()
    try:
        yield
    finally:
        took = time.monotonic() - started
        if took > seconds:
            raise AssertionError(f"{what} took {took:.1f}s, more than the {seconds:g}s allowed")
