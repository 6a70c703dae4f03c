"""The registry's HTTP surface against malformed and hostile requests: a 4xx with Confluent's error body,
never a 500, and the connection stays in step."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.raw_http import read_response, request

from k2.platform.registry import RegistryServer

SCHEMA = json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]})


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path) as srv:
        yield srv


def address(server: RegistryServer) -> tuple[str, int]:
    return ("127.0.0.1", server.port)


def test_chunked_register_keeps_the_connection_in_step(server: RegistryServer) -> None:
    body = json.dumps({"schema": SCHEMA}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    with socket.create_connection(address(server), timeout=5) as sock:
        sock.sendall(b"POST /subjects/t-value/versions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(chunked)
        status, _, payload = read_response(sock)
        assert status == 200 and json.loads(payload)["id"] == 1
        sock.sendall(b"GET /subjects HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, payload = read_response(sock)
        assert status == 200 and json.loads(payload) == ["t-value"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/subjects/t-value/versions/%C2%B2", None, 422),  # "²": isdigit() but not int()
        ("GET", "/schemas/ids/%C2%B2", None, 404),
        ("GET", "/subjects/%ED%A0%80/versions", None, 400),  # a lone surrogate, percent-encoded
        ("POST", "/subjects/t-value/versions", b"[" * 50_000 + b"]" * 50_000, 400),
        ("POST", "/subjects/t-value/versions", {"schema": "[" * 5000 + "]" * 5000}, 422),
        ("POST", "/subjects/t-value/versions", b'{"schema": "\\ud800"}', 400),
        ("PUT", "/config", b'{"compatibility": NaN}', 400),
        ("OPTIONS", "/subjects", None, 405),  # a method the registry does not serve (was http.server's 501 page)
        ("BREW", "/subjects", None, 405),
    ],
)
def test_malformed_requests_are_4xx(server: RegistryServer, method: str, path: str, body: object, status: int) -> None:
    got, error = request(address(server), method, path, body)
    assert got == status and isinstance(error["message"], str), error
    assert request(address(server), "GET", "/subjects") == (200, [])


def test_body_over_the_limit_is_413(server: RegistryServer) -> None:
    with socket.create_connection(address(server), timeout=5) as sock:
        sock.sendall(b"POST /subjects/t/versions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (64 << 20))
        status, _, payload = read_response(sock)
    assert status == 413 and json.loads(payload)["error_code"] == 413


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /subjects HTTP/9.9\r\n\r\n", 505),  # refused by http.server itself, before any route
        (b"GET /subjects HTTP/1.1 extra\r\n\r\n", 400),
        (b"GET /subjects HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    ],
)
def test_requests_http_server_refuses_get_confluents_json(server: RegistryServer, raw: bytes, status: int) -> None:
    with socket.create_connection(address(server), timeout=5) as sock:
        sock.sendall(raw)
        got, headers, payload = read_response(sock)
    assert got == status and headers["content-type"] == "application/json", payload
    assert json.loads(payload)["error_code"] == status
