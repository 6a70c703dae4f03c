"""The event-loop data path: many connections at once, the accept queue, bounded memory, half-close."""

from __future__ import annotations

import select
import socket
import subprocess
import threading

import pytest
from tests.unit.chaos.proxy.proxy_helpers import Recorder, connect, pattern, recv_exactly, recv_until_eof, wait_for

from k2.chaos.proxy import Proxy, _net
from k2.chaos.proxy.listener import backlog
from k2.chaos.proxy.pipe import QUEUE_LIMIT, READ_SIZE


def test_many_connections_round_trip_at_once(proxy: Proxy) -> None:
    """300 connections, each 20 round trips, all in flight together (a thread per link choked here)."""
    socks = [connect(proxy.listen_address) for _ in range(300)]
    try:
        for trip in range(20):
            for i, sock in enumerate(socks):
                sock.sendall(b"%05d:%02d" % (i, trip))
            for i, sock in enumerate(socks):
                assert recv_exactly(sock, 8, timeout=20) == b"%05d:%02d" % (i, trip)
        assert proxy.connections == 300
    finally:
        for sock in socks:
            sock.close()
    assert proxy.wait_connections(0, timeout=20)


def test_the_accept_queue_is_the_kernels_maximum(proxy: Proxy) -> None:
    with open("/proc/sys/net/core/somaxconn") as f:
        somaxconn = int(f.read())
    assert backlog() == max(128, somaxconn)
    port = proxy.listen_address[1]
    listing = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, timeout=10)
    if listing.returncode != 0 or not listing.stdout.strip():
        pytest.skip("ss (iproute2) is not available to read the listen queue size")
    assert int(listing.stdout.split()[2]) == backlog()  # Send-Q of a listener is its backlog


def test_a_burst_of_connects_is_all_accepted(proxy: Proxy) -> None:
    """500 connects at once all become connections: the non-blocking accept loop drains the queue on
    each wake-up (how fast is `bench_proxy`'s accept-burst row, with the kernel's SYN-drop counters)."""
    socks = []
    epoll = select.epoll()
    try:
        for _ in range(500):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(proxy.listen_address)
            epoll.register(sock.fileno(), select.EPOLLOUT)
            socks.append(sock)
        assert proxy.wait_connections(500, timeout=30), proxy.connections
    finally:
        epoll.close()
        for sock in socks:
            sock.close()


def test_memory_per_connection_is_bounded_and_reported() -> None:
    """A stalled toxic stops reading its source once its queue is full: the proxy holds at most the
    queue limit plus one read, and says how much it holds."""
    server = Recorder()
    try:
        with Proxy("mem", upstream=server.address, seed=1) as proxy, connect(proxy.listen_address) as sock:
            proxy.add_toxic("timeout", stream="upstream", timeout=0)
            data = pattern(32 << 20)
            sent = [0]

            def send() -> None:
                view = memoryview(data)
                try:
                    while sent[0] < len(data):
                        sent[0] += sock.send(view[sent[0] : sent[0] + 65536])
                except OSError:
                    pass

            sock.settimeout(10)
            threading.Thread(target=send, daemon=True).start()
            wait_for(lambda: proxy.stats()["bytes_held"] > QUEUE_LIMIT // 2, what="the proxy to hold data")
            held = proxy.stats()["bytes_held_max_per_connection"]
            assert QUEUE_LIMIT // 2 < held <= QUEUE_LIMIT + READ_SIZE
            assert sent[0] < len(data)  # the sender is pushed back, not buffered without limit
    finally:
        server.close()


def test_half_close_is_forwarded_through_a_toxic(proxy: Proxy) -> None:
    """K2 keeps half-closed connections working, with toxics too (Toxiproxy breaks them)."""
    proxy.add_toxic("latency", stream="upstream", latency=20)
    proxy.add_toxic("noop", stream="downstream")
    with connect(proxy.listen_address) as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        assert recv_until_eof(sock) == b"last words"


def test_bulk_pushed_back_by_a_slow_reader_arrives_intact() -> None:
    """A bulk direction reads into its own buffer: what the reader does not take yet waits there (at most
    one read), the sender is pushed back, and every byte arrives in order once the reader reads."""
    with socket.create_server((_net.LOOPBACK, 0)) as server, Proxy("bulk", upstream=server.getsockname()[:2]) as proxy:
        data = pattern(48 << 20)
        with connect(proxy.listen_address) as sock:
            writer = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
            writer.start()
            reader, _ = server.accept()
            with reader:
                wait_for(lambda: proxy.stats()["bytes_held"] > 0, what="the proxy to hold what the reader left")
                assert 0 < proxy.stats()["bytes_held_max_per_connection"] <= READ_SIZE
                assert recv_exactly(reader, len(data), timeout=60) == data
            writer.join(10)
