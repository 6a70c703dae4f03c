"""The proxy without toxics: integrity, counts, half-close, enable/disable, errors, toxic bookkeeping."""

from __future__ import annotations

import socket
import struct
import threading

import pytest
from tests.unit.chaos.proxy.proxy_helpers import connect, pattern, recv_exactly, recv_until_eof, rtt_ms, wait_for

from k2.chaos.errors import InvalidFault
from k2.chaos.proxy import AlreadyExists, EchoServer, NotFound, Proxy


def test_bytes_pass_intact_both_ways(proxy: Proxy) -> None:
    data = pattern(3 << 20)
    with connect(proxy.listen_address) as sock:
        writer = threading.Thread(target=sock.sendall, args=(data,))
        writer.start()
        assert recv_exactly(sock, len(data), timeout=20) == data
        writer.join(5)
    # Exact once the counts settle: a link on another loop than the one `stats()` runs on may count its last
    # send a moment after the client already has the bytes (a CI run caught it 320 KiB behind).
    wait_for(lambda: proxy.stats()["bytes_downstream"] == len(data), what="the downstream count to settle")
    stats = proxy.stats()
    assert stats["bytes_upstream"] == stats["bytes_downstream"] == len(data)


def test_listen_address_is_the_bound_port_and_counts_track_connections(proxy: Proxy) -> None:
    host, port = proxy.listen_address
    assert host == "127.0.0.1" and port > 0
    a, b = connect(proxy.listen_address), connect(proxy.listen_address)
    rtt_ms(a), rtt_ms(b)
    assert proxy.wait_connections(2)
    a.close()
    assert proxy.wait_connections(1)
    b.close()
    assert proxy.wait_connections(0)
    assert proxy.connections_total == 2


def test_half_close_is_forwarded(proxy: Proxy) -> None:
    with connect(proxy.listen_address) as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)  # the echo server sees EOF, answers, then closes
        assert recv_until_eof(sock) == b"last words"


def test_disable_cuts_open_connections_and_refuses_new_ones_on_the_same_port(proxy: Proxy) -> None:
    address = proxy.listen_address
    sock = connect(address)
    rtt_ms(sock)
    proxy.disable()
    assert not proxy.enabled
    assert recv_until_eof(sock, timeout=5) == b""
    with pytest.raises(ConnectionRefusedError):
        connect(address)
    proxy.enable()
    assert proxy.listen_address == address
    with connect(address) as again:
        rtt_ms(again)


def test_unreachable_upstream_resets_the_client() -> None:
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused, nobody takes the port
        upstream = dead.getsockname()
        with Proxy("dead", upstream=upstream, seed=1) as proxy:
            # The reset may beat the client's own connect() back to it (the proxy answers within
            # microseconds on loopback): either way the client sees its connection reset.
            with pytest.raises(ConnectionResetError), connect(proxy.listen_address) as sock:
                recv_until_eof(sock)
            assert proxy.wait_connections(0)


def test_a_proxy_whose_upstream_is_itself_is_refused() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    with pytest.raises(InvalidFault, match="its own listen address"):
        Proxy("loop", listen=("127.0.0.1", port), upstream=("127.0.0.1", port)).start()


def test_a_server_reset_reaches_the_client_as_a_reset() -> None:
    server = socket.create_server(("127.0.0.1", 0))

    def abort_after_first_read() -> None:
        conn, _ = server.accept()
        conn.recv(10)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    thread = threading.Thread(target=abort_after_first_read)
    thread.start()
    with Proxy("rst", upstream=server.getsockname(), seed=1) as proxy, connect(proxy.listen_address) as sock:
        sock.sendall(b"x")
        with pytest.raises(ConnectionResetError):
            recv_until_eof(sock)
    thread.join(5)
    server.close()


def test_toxic_bookkeeping(proxy: Proxy) -> None:
    toxic = proxy.add_toxic("latency", latency=1)
    assert proxy.toxics() == [toxic]
    assert proxy.toxic("latency_downstream") is toxic
    with pytest.raises(AlreadyExists, match="already exists"):
        proxy.add_toxic("latency", latency=2)
    updated = proxy.update_toxic("latency_downstream", latency=5)
    assert updated.attributes["latency"] == 5 and proxy.toxics() == [updated]
    proxy.remove_toxic("latency_downstream")
    with pytest.raises(NotFound, match="not found on proxy 'test'"):
        proxy.remove_toxic("latency_downstream")
    with pytest.raises(InvalidFault, match="client_listener"):
        proxy.add_toxic("latency", latency=1, clients=["nobody"])


def test_toxics_on_a_stopped_proxy_need_no_connection() -> None:
    p = Proxy("idle", upstream=("127.0.0.1", 9), seed=1)
    p.add_toxic("latency", latency=1)
    with pytest.raises(InvalidFault, match="not started"):
        _ = p.listen_address


def test_stop_closes_client_connections(echo: EchoServer) -> None:
    proxy = Proxy("stopme", upstream=echo.address, seed=1).start()
    sock = connect(proxy.listen_address)
    rtt_ms(sock)
    proxy.stop()
    assert recv_until_eof(sock) == b""
    sock.close()
