"""The query API's HTTP surface in-process (Starlette's test client, the real app): bad input of every kind
is a 4xx with a JSON error naming the parameter and the remedy, never a 500; limits answer 429 + Retry-After.

Storage here is an address where nothing listens, so a request that passes validation fails typed
(503) — which is what these tests need: the request got past every check."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from k2.platform.api import ApiSettings, create_app
from k2.platform.config import PlatformConfig

NOWHERE = PlatformConfig(
    kafka_bootstrap="-", schema_registry_url="-", s3_endpoint="http://127.0.0.1:9", s3_access_key="k",
    s3_secret_key="s", s3_bucket="warehouse", postgres_uri="postgresql://k2:pw@127.0.0.1:9/k2",
)  # fmt: skip


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = create_app(NOWHERE, ApiSettings(rate=1000, burst=1000, query_timeout=5))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def assert_error(response, status: int, code: str, parameter: str | None = None) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["remedy"]
    assert error.get("parameter") == parameter


@pytest.mark.parametrize(
    ("query", "code", "parameter"),
    [
        ("", "missing_parameter", "symbol"),
        ("symbol=", "missing_parameter", "symbol"),
        ("symbol=NOT A SYMBOL", "unknown_symbol", "symbol"),
        ("symbol=" + "A" * 5000, "unknown_symbol", "symbol"),
        ("symbol=BTC-USD&symbol=ETH-USD", "repeated_parameter", "symbol"),
        ("symbol=BTC-USD&bogus=1", "unknown_parameter", "bogus"),
        ("symbol=BTC-USD&limit=5", "unknown_parameter", "limit"),  # trades only
        ("symbol=BTC-USD&start=yesterday", "invalid_parameter", "start"),
        ("symbol=BTC-USD&start=2026-03-29T01:00:00", "naive_time", "start"),
        ("symbol=BTC-USD&start=1969-12-31T23:00:00Z", "invalid_parameter", "start"),
        ("symbol=BTC-USD&end=-5", "invalid_parameter", "end"),
        ("symbol=BTC-USD&end=99999999999999999999", "invalid_parameter", "end"),
        ("symbol=BTC-USD&start=2026-03-29T02:00:00Z&end=2026-03-29T01:00:00Z", "invalid_range", "end"),
        ("symbol=BTC-USD&start=10&end=10", "invalid_range", "end"),
        ("symbol=BTC-USD&namespace=../etc", "invalid_parameter", "namespace"),
        ("symbol=BTC-USD&namespace=Market", "invalid_parameter", "namespace"),
        ("symbol=BTC-USD&timeout=0", "invalid_parameter", "timeout"),
        ("symbol=BTC-USD&timeout=inf", "invalid_parameter", "timeout"),
        ("symbol=BTC-USD&timeout=nan", "invalid_parameter", "timeout"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(client: TestClient, query: str, code: str, parameter: str) -> None:
    assert_error(client.get(f"/v1/vwap?{query}"), 400, code, parameter)


@pytest.mark.parametrize(
    ("path", "code", "parameter"),
    [
        ("/v1/trades?symbol=BTC-USD&limit=0", "invalid_parameter", "limit"),
        ("/v1/trades?symbol=BTC-USD&limit=1e3", "invalid_parameter", "limit"),
        ("/v1/trades?symbol=BTC-USD&limit=100001", "invalid_parameter", "limit"),
        ("/v1/ohlcv?symbol=BTC-USD&interval=0m", "invalid_parameter", "interval"),
        ("/v1/ohlcv?symbol=BTC-USD&interval=32d", "invalid_parameter", "interval"),
        ("/v1/ohlcv?symbol=BTC-USD&interval=1w", "invalid_parameter", "interval"),
    ],
)
def test_endpoint_specific_parameters_are_checked(client: TestClient, path: str, code: str, parameter: str) -> None:
    assert_error(client.get(path), 400, code, parameter)


def test_wrong_routes_methods_and_client_ids(client: TestClient) -> None:
    assert_error(client.get("/v2/vwap"), 404, "not_found")
    assert_error(client.post("/v1/vwap?symbol=BTC-USD"), 405, "method_not_allowed")
    bad_id = client.get("/v1/vwap?symbol=BTC-USD", headers={"X-Client-Id": "x" * 65})
    assert_error(bad_id, 400, "invalid_header", "X-Client-Id")


def test_storage_down_is_a_typed_503_then_the_circuit_opens() -> None:
    app = create_app(NOWHERE, ApiSettings(failure_threshold=2, reset_timeout=30, query_timeout=5))
    with TestClient(app) as client:
        first = [client.get("/v1/vwap?symbol=BTC-USD") for _ in range(2)]
        for response in first:
            assert_error(response, 503, "storage_unavailable")
        refused = client.get("/v1/vwap?symbol=BTC-USD")
        assert_error(refused, 503, "circuit_open")
        assert 1 <= int(refused.headers["retry-after"]) <= 30
        assert client.get("/health").json()["breaker"]["state"] == "open"


def test_a_client_over_its_limit_gets_429_with_retry_after_and_others_do_not() -> None:
    app = create_app(NOWHERE, ApiSettings(rate=0.5, burst=2))
    with TestClient(app) as client:
        noisy = [client.get("/v1/vwap", headers={"X-Client-Id": "noisy"}) for _ in range(3)]
        assert [r.status_code for r in noisy] == [400, 400, 429]  # refused requests count too
        assert_error(noisy[-1], 429, "rate_limited")
        assert noisy[-1].headers["retry-after"] == "2"
        assert client.get("/v1/vwap", headers={"X-Client-Id": "quiet"}).status_code == 400


PARAM_NAMES = st.sampled_from(["symbol", "start", "end", "limit", "interval", "namespace", "timeout", "x", ""])
PARAM_VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["BTC-USD", "AAPL", "2026-03-29T01:00:00Z", "0", "-1", "1m", "1e309", "nan", "market"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/v1/trades", "/v1/ohlcv", "/v1/vwap"]),
    params=st.lists(st.tuples(PARAM_NAMES, PARAM_VALUES), max_size=5),
)
def test_no_query_string_gets_a_500(client: TestClient, path: str, params: list[tuple[str, str]]) -> None:
    response = client.get(f"{path}?{urlencode(params)}")
    assert response.status_code in (200, 400, 503, 504), response.text
    assert response.headers["content-type"] == "application/json"
    if response.status_code != 200:
        assert response.json()["error"]["remedy"]
