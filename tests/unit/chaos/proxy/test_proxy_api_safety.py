"""The proxy API against hostile and malformed requests: every one a JSON 4xx, nothing changed on refusal,
and Toxiproxy's own leniencies (stream case, toxicity null, wildcard listen) honoured."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from tests.raw_http import closed_by_peer, read_response, request

from k2.chaos.proxy import EchoServer, ProxyServer
from k2.httpsafe import GuardedHandler


@pytest.fixture
def server() -> Iterator[ProxyServer]:
    with ProxyServer(api=("127.0.0.1", 0), seed=3) as srv:
        yield srv


def call(server: ProxyServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return request(server.api_address, method, path, body)


def snapshot(server: ProxyServer) -> Any:
    return call(server, "GET", "/proxies")[1]


def test_chunked_body_is_read_and_the_connection_stays_in_step(server: ProxyServer, echo: EchoServer) -> None:
    body = json.dumps({"name": "svc", "upstream": f"127.0.0.1:{echo.address[1]}"}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    with socket.create_connection(server.api_address, timeout=5) as sock:
        sock.sendall(b"POST /proxies HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
        status, _, payload = read_response(sock)
        assert status == 201 and json.loads(payload)["name"] == "svc"
        sock.sendall(b"GET /proxies/svc HTTP/1.1\r\nHost: x\r\n\r\n")  # the same connection, next request
        status, _, payload = read_response(sock)
        assert status == 200 and json.loads(payload)["name"] == "svc"


def test_body_over_the_limit_is_413(server: ProxyServer) -> None:
    with socket.create_connection(server.api_address, timeout=5) as sock:
        sock.sendall(b"POST /proxies HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (GuardedHandler.MAX_BODY + 1))
        status, _, payload = read_response(sock)
    assert status == 413 and json.loads(payload)["status"] == 413


def test_slow_and_silent_clients_do_not_hold_a_thread(monkeypatch: pytest.MonkeyPatch, server: ProxyServer) -> None:
    monkeypatch.setattr(GuardedHandler, "REQUEST_DEADLINE", 0.5)
    monkeypatch.setattr(GuardedHandler, "IDLE_TIMEOUT", 0.5)
    with socket.create_connection(server.api_address, timeout=5) as slow:
        slow.sendall(b"POST /proxies HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")  # and nothing more
        status, _, payload = read_response(slow, timeout=5)
        assert status == 408 and "in time" in json.loads(payload)["error"]
        assert closed_by_peer(slow, timeout=5)
    with socket.create_connection(server.api_address, timeout=5) as silent:
        assert closed_by_peer(silent, timeout=5)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"type": "latency", "attributes": {"latency": NaN}}', "NaN"),
        (b'{"type": "latency", "attributes": {"latency": 1e400}}', "too large"),
        (b'{"type": "latency", "attributes": {"latency": 1' + b"0" * 400 + b"}}", "too large"),
        (b'{"type": "latency", "attributes": {"latency": Infinity}}', "Infinity"),
        (b'{"type": "latency", "toxicity": "high"}', "toxicity"),
        (b'{"type": "latency", "name": "a\\nb"}', "control characters"),
        (b'{"type": "latency", "name": "\\ud800"}', "surrogate"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b'{"type": "latency", "clients": "producer"}', "clients"),
    ],
)
def test_malformed_toxics_are_400_with_a_json_error(
    server: ProxyServer, echo: EchoServer, body: bytes, fragment: str
) -> None:
    server.create("svc", echo.address)
    before = snapshot(server)
    status, error = call(server, "POST", "/proxies/svc/toxics", body)
    assert status == 400 and error["status"] == 400 and fragment in error["error"], error
    assert snapshot(server) == before


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"name": "x", "upstream": "127.0.0.1:²"}, "host:port"),
        ({"name": "x", "upstream": "127.0.0.1:8080", "listen": "127.0.0.1:١٢٣٤"}, "host:port"),
        ({"name": "x\r\nSet-Cookie: a", "upstream": "127.0.0.1:8080"}, "control characters"),
        ({"name": "x", "upstream": "127.0.0.1:8080", "listen": "127.0.0.1:22"}, "below 1024"),
        ({"name": "x", "upstream": "127.0.0.1:8080", "enabled": "false"}, "true or false"),
        ({"name": "x", "upstream": "127.0.0.1:0"}, "port 0"),
        ({"name": ["x"], "upstream": "127.0.0.1:8080"}, "string"),
    ],
)
def test_malformed_proxies_are_400(server: ProxyServer, spec: dict[str, Any], fragment: str) -> None:
    status, error = call(server, "POST", "/proxies", spec)
    assert status == 400 and fragment in error["error"], error
    assert snapshot(server) == {}


def test_busy_listen_port_is_409(server: ProxyServer, echo: EchoServer) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        spec = {"name": "x", "upstream": f"127.0.0.1:{echo.address[1]}", "listen": f"127.0.0.1:{port}"}
        status, error = call(server, "POST", "/proxies", spec)
    assert status == 409 and "cannot listen" in error["error"]
    assert snapshot(server) == {}


def test_no_loops_on_create_or_update(server: ProxyServer, echo: EchoServer) -> None:
    a = server.create("a", echo.address)
    b = server.create("b", echo.address)
    own = f"127.0.0.1:{a.listen_address[1]}"
    assert call(server, "POST", "/proxies/a", {"upstream": own})[0] == 400  # itself
    assert call(server, "POST", "/proxies/a", {"upstream": f"127.0.0.1:{b.listen_address[1]}"})[0] == 400
    api = f"127.0.0.1:{server.api_address[1]}"
    assert call(server, "POST", "/proxies/a", {"upstream": api})[0] == 400
    assert call(server, "POST", "/proxies", {"name": "c", "upstream": api})[0] == 400
    assert a.upstream == echo.address


def test_stack_proxies_cannot_be_repointed(server: ProxyServer, echo: EchoServer) -> None:
    server.create("kafka", echo.address, pinned=True)
    before = snapshot(server)
    for body in ({"upstream": "127.0.0.1:9"}, {"listen": "127.0.0.1:40999"}):
        status, error = call(server, "POST", "/proxies/kafka", body)
        assert status == 403 and "stack's own" in error["error"]
    assert call(server, "DELETE", "/proxies/kafka")[0] == 403
    status, _ = call(server, "POST", "/populate", [{"name": "kafka", "upstream": "127.0.0.1:9"}])
    assert status == 403
    assert snapshot(server) == before
    assert call(server, "POST", "/proxies/kafka", {"enabled": False})[1]["enabled"] is False  # faults still work
    assert call(server, "POST", "/proxies/kafka/toxics", {"type": "latency"})[0] == 200


def test_toxiproxy_leniencies(server: ProxyServer, echo: EchoServer) -> None:
    status, proxy = call(server, "POST", "/proxies", {"name": "w", "upstream": f"127.0.0.1:{echo.address[1]}",
                                                      "listen": "0.0.0.0:0"})  # fmt: skip
    assert status == 201 and proxy["listen"].startswith("127.0.0.1:") and "loopback" in proxy["warning"]
    body = {"type": "latency", "stream": "UpStream", "toxicity": None}
    status, toxic = call(server, "POST", "/proxies/w/toxics", body)
    assert status == 200 and toxic["stream"] == "upstream" and toxic["toxicity"] == 1.0


def test_populate_is_all_or_nothing(server: ProxyServer, echo: EchoServer) -> None:
    upstream = f"127.0.0.1:{echo.address[1]}"
    good = {"name": "a", "upstream": upstream}
    for bad in ({"name": "b", "upstream": upstream, "enabled": "false"}, {"name": "b", "upstream": "1.2.3.4:5"},
                {"name": "a", "upstream": upstream}):  # fmt: skip
        status, error = call(server, "POST", "/populate", [good, bad])
        assert status == 400, error
        assert snapshot(server) == {}
    with socket.socket() as holder:  # the second cannot start: the first is removed again
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = {"name": "b", "upstream": upstream, "listen": f"127.0.0.1:{holder.getsockname()[1]}"}
        assert call(server, "POST", "/populate", [good, busy])[0] == 409
    assert snapshot(server) == {}


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "BREW"])
def test_a_method_the_api_does_not_serve_is_405_naming_those_it_does(server: ProxyServer, method: str) -> None:
    """http.server answered these with a 501 HTML page: a 5xx, and not the JSON every Toxiproxy client parses."""
    with socket.create_connection(server.api_address, timeout=5) as sock:
        sock.sendall(f"{method} /proxies HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, headers, payload = read_response(sock)
    assert status == 405 and headers["content-type"] == "application/json"
    assert headers["allow"] == "DELETE, GET, PATCH, POST, PUT"
    assert json.loads(payload) == {
        "error": f"method {method!r} is not served here: use DELETE, GET, PATCH, POST, PUT",
        "status": 405,
    }


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /proxies HTTP/9.9\r\n\r\n", 505),
        (b"GET /proxies HTTP/1.1 extra\r\n\r\n", 400),
        (b"GET /proxies HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
    ],
)
def test_requests_http_server_refuses_get_a_json_error(server: ProxyServer, raw: bytes, status: int) -> None:
    with socket.create_connection(server.api_address, timeout=5) as sock:
        sock.sendall(raw)
        got, headers, payload = read_response(sock)
    assert got == status and headers["content-type"] == "application/json", payload
    assert json.loads(payload)["status"] == status and json.loads(payload)["error"]
