"""Per-client token buckets and in-flight caps of the query API."""

from __future__ import annotations

import pytest

from k2.platform.api.limiter import OVERFLOW, ClientLimiter


def admit(limiter: ClientLimiter, client: str) -> float | None:
    """One request that finishes at once: its in-flight slot is released."""
    key, wait = limiter.acquire(client)
    if wait is None:
        limiter.release(key)
    return wait


def test_a_client_gets_its_burst_then_is_told_when_to_retry() -> None:
    limiter = ClientLimiter(rate=2.0, burst=3)
    assert [admit(limiter, "a") for _ in range(3)] == [None, None, None]
    wait = admit(limiter, "a")
    assert wait is not None and 0 < wait <= 0.5 + 1e-6
    assert limiter.rejected == 1


def test_clients_do_not_share_a_bucket() -> None:
    limiter = ClientLimiter(rate=1.0, burst=1)
    assert admit(limiter, "noisy") is None
    assert admit(limiter, "noisy") is not None
    assert admit(limiter, "quiet") is None


def test_a_client_has_at_most_max_in_flight_requests_running() -> None:
    """However many tokens it has: its admitted burst cannot queue up the engine for everyone."""
    limiter = ClientLimiter(rate=100.0, burst=100, max_in_flight=2)
    held = [limiter.acquire("noisy") for _ in range(2)]
    assert [wait for _, wait in held] == [None, None]
    assert limiter.acquire("noisy") == ("noisy", 1.0)
    assert admit(limiter, "quiet") is None
    limiter.release(held[0][0])
    assert admit(limiter, "noisy") is None


def test_inventing_client_ids_past_the_bound_lands_in_one_shared_bucket() -> None:
    limiter = ClientLimiter(rate=1.0, burst=1, max_clients=2)
    assert admit(limiter, "a") is None and admit(limiter, "b") is None
    assert limiter.acquire("c") == (OVERFLOW, None)  # the overflow bucket's one token
    limiter.release(OVERFLOW)
    assert admit(limiter, "d") is not None  # the same overflow bucket
    assert limiter.clients == 3


@pytest.mark.parametrize(("seconds", "header"), [(0.0, "1"), (0.01, "1"), (1.0, "1"), (1.2, "2")])
def test_retry_after_is_whole_seconds_never_zero(seconds: float, header: str) -> None:
    assert ClientLimiter.retry_after_header(seconds) == header


@pytest.mark.parametrize(("rate", "burst", "in_flight"), [(0, 1, 1), (-1, 1, 1), (1, 0, 1), (1, 10**7, 1), (1, 1, 0)])
def test_refuses_limits_that_limit_nothing_or_everything(rate: float, burst: int, in_flight: int) -> None:
    with pytest.raises(ValueError, match="give"):
        ClientLimiter(rate, burst, max_in_flight=in_flight)
