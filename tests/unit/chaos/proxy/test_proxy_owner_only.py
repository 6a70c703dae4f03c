"""An owner-only proxy lets the owner's connections through and resets those whose caller it cannot
vouch for (another user's: tests/integration/test_api_callers.py, which needs root)."""

from __future__ import annotations

import socket
import struct

import pytest
from tests.unit.chaos.proxy.proxy_helpers import connect, rtt_ms, wait_for

from k2.chaos.proxy import EchoServer, Proxy


def test_the_owner_gets_through(echo: EchoServer) -> None:
    with Proxy("registry", upstream=echo.address, seed=1, owner_only=True) as proxy:
        with connect(proxy.listen_address) as sock:
            assert rtt_ms(sock) >= 0
        assert proxy.to_json()["owner_only"] is True
        assert proxy.stats()["connections_refused_callers"] == 0


def test_a_caller_gone_before_accept_is_refused(echo: EchoServer) -> None:
    """Connected and reset before the loop accepts it: nobody owns the client end any more, so no
    uid (least of all the 0 the kernel shows for leftovers) can vouch for it."""
    with Proxy("registry", upstream=echo.address, seed=1, owner_only=True) as proxy:

        def connect_and_vanish() -> None:  # runs in the loop: the accept waits until it returns
            sock = socket.create_connection(proxy.listen_address, timeout=5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

        proxy.reactor.call(connect_and_vanish)
        wait_for(lambda: proxy.stats()["connections_refused_callers"] == 1, what="the refusal")
        assert proxy.connections_total == 0
        with connect(proxy.listen_address) as sock:  # the owner still gets through
            assert rtt_ms(sock) >= 0


def test_owner_only_is_a_boolean(echo: EchoServer) -> None:
    with pytest.raises(Exception, match="owner_only must be true or false"):
        Proxy("registry", upstream=echo.address, owner_only="yes")  # type: ignore[arg-type]


def test_refuse_as_names_a_known_answer(echo: EchoServer) -> None:
    with pytest.raises(Exception, match="refuse_as 'teapot' is unknown; use one of reset, http"):
        Proxy("registry", upstream=echo.address, owner_only=True, refuse_as="teapot")
    with Proxy("registry", upstream=echo.address, seed=1, owner_only=True, refuse_as="http") as proxy:
        with connect(proxy.listen_address) as sock:  # the owner is let through, not answered 403
            assert rtt_ms(sock) >= 0
        assert proxy.to_json()["refuse_as"] == "http"
