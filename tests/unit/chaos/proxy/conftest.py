"""Fixtures for the proxy tests: a loopback echo server and a seeded proxy in front of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from k2.chaos.proxy import EchoServer, Proxy


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with EchoServer("echo") as server:
        yield server


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[Proxy]:
    with Proxy("test", upstream=echo.address, seed=42) as p:
        yield p
