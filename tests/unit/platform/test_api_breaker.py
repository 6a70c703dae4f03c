"""The query API's circuit breaker: opening, one half-open probe, closing, and its clock."""

from __future__ import annotations

import threading
import time

import pytest

from k2.platform.api.breaker import BreakerOpen, CircuitBreaker


class Storage(Exception):
    """Stands for a storage failure."""


class BadInput(Exception):
    """Stands for a refused request."""


def is_failure(exc: BaseException) -> bool:
    return isinstance(exc, Storage)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fail(breaker: CircuitBreaker, error: type[Exception] = Storage) -> None:
    with pytest.raises(error), breaker.guard(is_failure):
        raise error("down")


def succeed(breaker: CircuitBreaker) -> None:
    with breaker.guard(is_failure):
        pass


def test_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(3, 5.0, clock=FakeClock())
    fail(breaker)
    fail(breaker)
    succeed(breaker)  # resets the count
    fail(breaker)
    fail(breaker)
    fail(breaker, BadInput)  # bad input is neither
    assert breaker.snapshot().state == "closed" and breaker.snapshot().consecutive_failures == 2
    fail(breaker)
    state = breaker.snapshot()
    assert (state.state, state.opened, state.retry_after) == ("open", 1, 5.0)


def test_open_refuses_without_calling_and_says_when_to_come_back() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    fail(breaker)
    clock.now += 2
    called = []
    with pytest.raises(BreakerOpen) as refused, breaker.guard(is_failure):
        called.append(1)
    assert not called and refused.value.retry_after == pytest.approx(3.0)
    assert breaker.snapshot().rejected == 1


def test_exactly_one_probe_when_half_open_and_its_success_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    fail(breaker)
    clock.now += 5
    probe = breaker.guard(is_failure)
    probe.__enter__()  # the probe is in flight
    with pytest.raises(BreakerOpen, match="probe"), breaker.guard(is_failure):
        pass
    probe.__exit__(None, None, None)
    state = breaker.snapshot()
    assert (state.state, state.closed) == ("closed", 1)
    succeed(breaker)


def test_a_failed_probe_opens_for_another_full_period() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(2, 5.0, clock=clock)
    fail(breaker)
    fail(breaker)
    clock.now += 6
    fail(breaker)  # the probe
    assert breaker.snapshot().state == "open" and breaker.snapshot().retry_after == 5.0
    assert breaker.snapshot().opened == 1  # one outage, opened once


def test_a_probe_refused_for_bad_input_frees_the_slot() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    fail(breaker)
    clock.now += 5
    fail(breaker, BadInput)
    succeed(breaker)  # the next caller may probe
    assert breaker.snapshot().state == "closed"


def test_calls_run_concurrently_the_lock_is_not_held_during_a_call() -> None:
    """A hung storage call must not hold up other callers (pybreaker holds its lock through the call)."""
    breaker = CircuitBreaker(3, 5.0)
    entered, release = threading.Event(), threading.Event()

    def slow_call() -> None:
        with breaker.guard(is_failure):
            entered.set()
            release.wait(10)

    worker = threading.Thread(target=slow_call)
    worker.start()
    try:
        assert entered.wait(5)
        started = time.monotonic()
        succeed(breaker)
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
        worker.join(10)


def test_times_on_the_monotonic_clock() -> None:
    """A wall-clock jump on the API host must neither close the circuit early nor keep it open for hours."""
    assert CircuitBreaker()._clock is time.monotonic


@pytest.mark.parametrize(("threshold", "reset"), [(0, 5.0), (3, 0.0), (3, -1.0), (3, 7200.0)])
def test_refuses_settings_that_make_no_breaker(threshold: int, reset: float) -> None:
    with pytest.raises(ValueError, match="give"):
        CircuitBreaker(threshold, reset)
