"""Per-client token buckets of the query API."""

from __future__ import annotations

import pytest

from k2.platform.api.limiter import ClientLimiter


def test_a_client_gets_its_burst_then_is_told_when_to_retry() -> None:
    limiter = ClientLimiter(rate=2.0, burst=3)
    assert [limiter.acquire("a") for _ in range(3)] == [None, None, None]
    wait = limiter.acquire("a")
    assert wait is not None and 0 < wait <= 0.5 + 1e-6
    assert limiter.rejected == 1


def test_clients_do_not_share_a_bucket() -> None:
    limiter = ClientLimiter(rate=1.0, burst=1)
    assert limiter.acquire("noisy") is None
    assert limiter.acquire("noisy") is not None
    assert limiter.acquire("quiet") is None


def test_inventing_client_ids_past_the_bound_lands_in_one_shared_bucket() -> None:
    limiter = ClientLimiter(rate=1.0, burst=1, max_clients=2)
    assert limiter.acquire("a") is None and limiter.acquire("b") is None
    assert limiter.acquire("c") is None  # the overflow bucket's one token
    assert limiter.acquire("d") is not None  # the same overflow bucket
    assert limiter.clients == 3


@pytest.mark.parametrize(("seconds", "header"), [(0.0, "1"), (0.01, "1"), (1.0, "1"), (1.2, "2")])
def test_retry_after_is_whole_seconds_never_zero(seconds: float, header: str) -> None:
    assert ClientLimiter.retry_after_header(seconds) == header


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0), (1, 10**7)])
def test_refuses_limits_that_limit_nothing_or_everything(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="give"):
        ClientLimiter(rate, burst)
