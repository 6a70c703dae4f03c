"""The seed's planned API gateway chaos: the platform's query API (`api`, behind the fault proxy) under a
client flood, a storage outage, slow storage and a frozen gateway. In the last three, trades flow producer -> Kafka ->
writer -> Iceberg throughout; after every fault the checker compares what the API returns with the ledger
and with Iceberg, read independently of the API.

Expected outcomes (each scenario asserts its own):
- one client flooding: it gets 429 + Retry-After, other clients are served, nothing answers 5xx;
- S3 down or slow: the first calls fail typed (503 storage_unavailable / 504 query_timeout), then the
  circuit opens and callers get 503 circuit_open + Retry-After in milliseconds; once storage is back one
  probe closes it and the API's answers match Iceberg;
- the gateway frozen: clients time out (no answer at all, never a partial one), and after the thaw the
  same process answers correctly with its circuit still closed.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from k2.scenarios.api_client import Answer, ApiClient, ApiReader, iceberg_vwap

pytestmark = [pytest.mark.chaos, pytest.mark.chaos_api]

SYMBOL = "BTC-USD"


@pytest.fixture
def api_client(k2_stack: Any) -> Iterator[Callable[..., ApiClient]]:
    """api_client(client_id, timeout=10): clients of the stack's query API (through the fault proxy)."""
    made: list[ApiClient] = []

    def make(client_id: str, timeout: float = 10.0) -> ApiClient:
        made.append(ApiClient(k2_stack.endpoints().api_url, client_id, timeout=timeout))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def api_data(producer_v2: Any, trade_factory: Any, lake_writer: Any) -> Callable[[int], None]:
    """api_data(n): n more acknowledged trades of SYMBOL, waited for until the writer has them in Iceberg."""

    def add(n: int) -> None:
        target = lake_writer.health().rows_written + n
        for _ in range(n):
            producer_v2.produce_trade(trade_factory(SYMBOL))
        assert producer_v2.flush(30) == 0
        wait_for(lambda: lake_writer.health().rows_written >= target, 60, "the trades to reach Iceberg")

    return add


@pytest.fixture
def verify_api(
    api_client: Callable[..., ApiClient], platform_config: Any, chaos_ledger: Any, chaos_check: Any,
    verify_no_loss: Any,
) -> Callable[[], None]:  # fmt: skip
    """After recovery: Kafka and Iceberg hold every acknowledged trade once (checker), the API returns exactly
    those trades (checker, source api:trades), and its VWAP equals one computed from Iceberg in Python."""
    from k2.chaos.checker import wait_drained

    def verify() -> None:
        verify_no_loss(iceberg=True)
        reader = ApiReader(api_client("checker", timeout=30), platform_config.namespace, [SYMBOL])
        observed = wait_drained(reader.read, chaos_ledger.acked_keys(), 30, sources=[reader.source])
        chaos_check(observed, sources=[reader.source])
        answer = reader.client.vwap(SYMBOL, platform_config.namespace)
        assert answer.status == 200 and answer.body is not None, answer
        assert answer.body["vwap"] == str(iceberg_vwap(platform_config, SYMBOL))

    return verify


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def until_circuit_opens(client: ApiClient, namespace: str, limit: int = 30, **params: Any) -> list[Answer]:
    """Ask for a VWAP until the circuit answers `circuit_open` (at most `limit` requests); every answer."""
    answers: list[Answer] = []
    while len(answers) < limit:
        answers.append(client.vwap(SYMBOL, namespace, **params))
        if answers[-1].code == "circuit_open":
            return answers
    raise AssertionError(f"the circuit did not open within {limit} requests: {Counter(a.code for a in answers)}")


def assert_fails_fast(client: ApiClient, namespace: str, n: int = 20) -> float:
    """While open, every call is refused without touching storage; returns the median latency (ms)."""
    answers = [client.vwap(SYMBOL, namespace, timeout=10) for _ in range(n)]
    assert {a.status for a in answers} == {503} and {a.code for a in answers} == {"circuit_open"}, answers
    assert all(a.retry_after and int(a.retry_after) >= 1 for a in answers)
    median_ms = statistics.median(a.elapsed_s for a in answers) * 1000
    assert median_ms < 100, f"fail-fast answers took {median_ms:.1f} ms (median)"
    return median_ms


class TestRateLimiting:
    def test_one_client_exhausts_its_limit_others_are_served(
        self, api_client: Callable[..., ApiClient], api_data: Callable[[int], None], platform_config: Any,
        verify_api: Callable[[], None],
    ) -> None:  # fmt: skip
        """One client fires 120 requests at once (120 threads): past its 4 running requests and its burst it
        gets 429s with Retry-After and
        a JSON error, while a second client asking 10/s meanwhile is answered every time (more slowly while the
        flood's admitted queries hold the engine's workers); no answer is a 5xx.
        After waiting out Retry-After the noisy client is served again, and what the API returns matches the
        ledger and Iceberg. (The limit is checked on arrival, before any query runs, so the flood is refused
        however fast the queries are.)"""
        api_data(20)
        ns = platform_config.namespace
        assert api_client("warm-up", timeout=60).vwap(SYMBOL, ns).status == 200  # a cold API loads its engine
        # long client timeouts: the flood's admitted queries queue on the engine's few workers, shared by all
        noisy, quiet = api_client("noisy", timeout=60), api_client("quiet", timeout=60)
        quiet_answers: list[Answer] = []
        done = threading.Event()
        start = threading.Barrier(120)

        def ask_politely() -> None:
            while not done.is_set() and len(quiet_answers) < 30:
                quiet_answers.append(quiet.vwap(SYMBOL, ns))
                done.wait(0.1)

        def flood(_: int) -> Answer:
            start.wait(30)
            return noisy.vwap(SYMBOL, ns)

        polite = threading.Thread(target=ask_politely)
        polite.start()
        try:
            with ThreadPoolExecutor(120) as pool:
                answers = list(pool.map(flood, range(120)))
        finally:
            done.set()
            polite.join(30)
        statuses = Counter(a.status for a in answers)
        assert statuses[429] > 0 and set(statuses) <= {200, 429}, statuses
        limited = [a for a in answers if a.status == 429]
        assert all(a.code == "rate_limited" and a.retry_after and int(a.retry_after) >= 1 for a in limited)
        assert quiet_answers and {a.status for a in quiet_answers} == {200}, Counter(a.status for a in quiet_answers)
        time.sleep(int(limited[-1].retry_after or 1))  # what the API told the client to do
        assert noisy.vwap(SYMBOL, ns).status == 200
        verify_api()


class TestCircuitBreaker:
    def test_s3_outage_opens_the_circuit_and_recovery_closes_it(
        self, api_client: Callable[..., ApiClient], api_data: Callable[[int], None], platform_config: Any,
        chaos_minio_failure: Any, verify_api: Callable[[], None],
    ) -> None:  # fmt: skip
        """Object store stopped: the first calls fail typed (503 storage_unavailable or 504), then the circuit
        opens and every call is refused in milliseconds with Retry-After; after the restart one probe closes
        the circuit and the API's trades and VWAP match Iceberg."""
        api_data(30)
        client, ns = api_client("breaker"), platform_config.namespace
        assert client.vwap(SYMBOL, ns).status == 200
        opened_before = client.health()["breaker"]["opened"]
        with chaos_minio_failure(duration_seconds=None, mode="stop"):
            answers = until_circuit_opens(client, ns, timeout=1)
            failed = answers[:-1]
            assert failed and all(a.code in ("storage_unavailable", "query_timeout") for a in failed), failed
            assert all(a.status in (503, 504) for a in answers)
            assert_fails_fast(client, ns)
        wait_for(lambda: client.vwap(SYMBOL, ns).status == 200, 30, "the circuit to close after S3 came back")
        breaker = client.health()["breaker"]
        assert breaker["state"] == "closed" and breaker["opened"] > opened_before and breaker["closed"] >= 1
        verify_api()

    def test_slow_storage_opens_the_circuit(
        self, api_client: Callable[..., ApiClient], api_data: Callable[[int], None], platform_config: Any,
        chaos_session: Any, verify_api: Callable[[], None],
    ) -> None:  # fmt: skip
        """Every object-store response delayed 1.5 s and queries given 1 s: each times out (504 query_timeout),
        the circuit opens and callers are refused at once instead of waiting; without the delay it closes."""
        from k2.chaos.faults import inject_latency

        api_data(30)
        client, ns = api_client("slow"), platform_config.namespace
        assert client.vwap(SYMBOL, ns).status == 200
        with inject_latency("s3", latency_ms=1500, jitter_ms=0, session=chaos_session):
            answers = until_circuit_opens(client, ns, timeout=1)
            assert {a.code for a in answers[:-1]} == {"query_timeout"}, answers
            assert_fails_fast(client, ns)
        wait_for(lambda: client.vwap(SYMBOL, ns).status == 200, 30, "the circuit to close after the delay ended")
        verify_api()


class TestGatewayFailure:
    def test_paused_gateway_times_out_clients_then_answers_correctly(
        self, api_client: Callable[..., ApiClient], api_data: Callable[[int], None], platform_config: Any,
        chaos_api_failure: Any, verify_api: Callable[[], None],
    ) -> None:  # fmt: skip
        """The API process frozen 3 s: every client gets a client-side timeout (no answer at all, never a partial
        body), requests sent meanwhile are answered or refused whole after the thaw, and the circuit stays closed
        (a frozen gateway is not a storage failure)."""
        api_data(30)
        ns = platform_config.namespace
        assert api_client("warm-up", timeout=60).vwap(SYMBOL, ns).status == 200  # a cold API loads its engine
        client = api_client("patient", timeout=1.0)
        with chaos_api_failure(duration_seconds=3, mode="pause"):
            during = [client.vwap(SYMBOL, ns) for _ in range(2)]
            assert all(a.status is None and a.failure == "ReadTimeout" for a in during), during
        after = api_client("after-thaw")
        wait_for(lambda: after.vwap(SYMBOL, ns).status == 200, 10, "the API to answer after the thaw")
        assert after.health()["breaker"]["state"] == "closed"
        verify_api()
