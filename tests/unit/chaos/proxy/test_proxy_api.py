"""The HTTP API: Toxiproxy's paths, JSON shapes and status codes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from tests.unit.chaos.proxy.proxy_helpers import connect, rtt_ms

from k2.chaos.proxy import EchoServer, ProxyServer


@pytest.fixture
def server() -> Iterator[ProxyServer]:
    with ProxyServer(api=("127.0.0.1", 0), seed=3) as srv:
        yield srv


def call(server: ProxyServer, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(server.api_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_proxy_lifecycle(server: ProxyServer, echo: EchoServer) -> None:
    upstream = f"127.0.0.1:{echo.address[1]}"
    assert call(server, "GET", "/proxies") == (200, {})
    status, created = call(server, "POST", "/proxies", {"name": "svc", "upstream": upstream})
    assert status == 201
    assert created["name"] == "svc" and created["upstream"] == upstream and created["enabled"] is True
    assert created["toxics"] == [] and not created["listen"].endswith(":0")
    assert call(server, "GET", "/proxies")[1] == {"svc": created}
    assert call(server, "GET", "/proxies/svc") == (200, created)

    status, error = call(server, "POST", "/proxies", {"name": "svc", "upstream": upstream})
    assert status == 409 and error["status"] == 409 and "already exists" in error["error"]

    status, updated = call(server, "POST", "/proxies/svc", {"enabled": False})
    assert status == 200 and updated["enabled"] is False and not server.get("svc").enabled
    assert call(server, "PATCH", "/proxies/svc", {"enabled": True})[1]["enabled"] is True

    assert call(server, "DELETE", "/proxies/svc") == (204, None)
    assert call(server, "GET", "/proxies/svc")[0] == 404


def test_toxic_lifecycle(server: ProxyServer, echo: EchoServer) -> None:
    proxy = server.create("svc", echo.address)
    body = {"type": "latency", "attributes": {"latency": 120}}
    status, toxic = call(server, "POST", "/proxies/svc/toxics", body)
    assert status == 200
    assert toxic == {
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"latency": 120, "jitter": 0},
    }
    with connect(proxy.listen_address) as sock:
        assert rtt_ms(sock) >= 115
        assert call(server, "GET", "/proxies/svc/toxics") == (200, [toxic])
        assert call(server, "GET", "/proxies/svc/toxics/latency_downstream") == (200, toxic)
        assert call(server, "GET", "/proxies/svc")[1]["toxics"] == [toxic]
        status, changed = call(server, "POST", "/proxies/svc/toxics/latency_downstream", {"attributes": {"latency": 1}})
        assert status == 200 and changed["attributes"] == {"latency": 1, "jitter": 0}
        assert rtt_ms(sock) < 60
        assert call(server, "DELETE", "/proxies/svc/toxics/latency_downstream") == (204, None)
    assert call(server, "GET", "/proxies/svc/toxics/latency_downstream")[0] == 404
    assert call(server, "DELETE", "/proxies/svc/toxics/latency_downstream")[0] == 404


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "bad request body"),
        ({"type": "nope"}, 400, "unknown"),
        ({"type": "latency", "stream": "sideways"}, 400, "stream"),
        ({"type": "latency", "toxicity": 2}, 400, "outside [0, 1]"),
        ({"type": "latency", "attributes": {"latency": -1}}, 400, ">= 0"),
        ({"attributes": {}}, 400, "type"),
    ],
)
def test_bad_toxics_are_400(server: ProxyServer, echo: EchoServer, body: Any, status: int, fragment: str) -> None:
    server.create("svc", echo.address)
    got_status, error = call(server, "POST", "/proxies/svc/toxics", body)
    assert (got_status, error["status"]) == (status, status)
    assert fragment in error["error"]


def test_errors(server: ProxyServer, echo: EchoServer) -> None:
    assert call(server, "POST", "/proxies/ghost/toxics", {"type": "latency"})[0] == 404
    assert call(server, "POST", "/proxies", {"name": "x"}) == (
        400,
        {"error": "missing required field: upstream", "status": 400},
    )
    assert call(server, "POST", "/proxies", {"name": "x", "upstream": "10.1.2.3:80"})[0] == 400
    server.create("svc", echo.address)
    call(server, "POST", "/proxies/svc/toxics", {"type": "latency"})
    assert call(server, "POST", "/proxies/svc/toxics", {"type": "latency"})[0] == 409
    assert call(server, "GET", "/nowhere")[0] == 404
    assert call(server, "PUT", "/proxies")[0] == 405
    assert call(server, "GET", "/proxies", **{"User-Agent": "Mozilla/5.0"})[0] == 403


def test_populate_reset_and_version(server: ProxyServer, echo: EchoServer) -> None:
    upstream = f"127.0.0.1:{echo.address[1]}"
    specs = [{"name": "a", "upstream": upstream}, {"name": "b", "upstream": upstream, "enabled": False}]
    status, result = call(server, "POST", "/populate", specs)
    assert status == 201 and [p["name"] for p in result["proxies"]] == ["a", "b"]
    listen_a = result["proxies"][0]["listen"]
    again = call(server, "POST", "/populate", specs)[1]
    assert again["proxies"][0]["listen"] == listen_a  # unchanged proxies are kept, not recreated

    call(server, "POST", "/proxies/a/toxics", {"type": "timeout", "attributes": {"timeout": 0}})
    assert call(server, "POST", "/reset") == (204, None)
    state = call(server, "GET", "/proxies")[1]
    assert state["a"]["toxics"] == [] and state["b"]["enabled"] is True

    status, version = call(server, "GET", "/version")
    assert status == 200 and version["version"].startswith("2.12.0+k2.")  # Toxiproxy API version + ours
