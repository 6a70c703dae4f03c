"""Fixtures for the proxy tests: a loopback echo server and a seeded proxy in front of it.

The `proxy` fixture runs every test that takes it twice: with every connection on the one loop, and with
connections dealt between two loops (as the daemon runs them with `python -m k2.chaos.proxy --loops 2`), so
what the control loop does to a connection is proven to reach it on another thread too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from k2.chaos.proxy import EchoServer, Proxy
from k2.chaos.proxy.reactor import Reactor, shared

_second: list[Reactor] = []
_second_lock = threading.Lock()


def second_loop() -> Reactor:
    """One more connection loop for the tests, made once (loops are daemon threads; never stopped)."""
    with _second_lock:
        if not _second:
            _second.append(Reactor("k2-proxy-test-loop"))
        return _second[0]


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with EchoServer("echo") as server:
        yield server


@pytest.fixture(params=[1, 2], ids=["one-loop", "two-loops"])
def proxy(echo: EchoServer, request: pytest.FixtureRequest) -> Iterator[Proxy]:
    loops = None if request.param == 1 else [shared(), second_loop()]
    with Proxy("test", upstream=echo.address, seed=42, loops=loops) as p:
        yield p
