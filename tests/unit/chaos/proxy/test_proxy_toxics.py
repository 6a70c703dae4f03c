"""Each toxic's effect, measured on real loopback connections.

Timing tolerances are wide on purpose (a shared 2-core machine): lower bounds are what the toxic
guarantees; upper bounds only catch a toxic that is far off.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time

import pytest
from tests.unit.chaos.proxy.proxy_helpers import (
    Recorder,
    connect,
    nothing_arrives,
    pattern,
    recv_exactly,
    recv_until_eof,
    rtt_ms,
    wait_for,
)

from k2.chaos.proxy import Proxy


def test_latency_with_jitter_shapes_the_rtt_distribution(proxy: Proxy) -> None:
    proxy.add_toxic("latency", latency=100, jitter=50)
    with connect(proxy.listen_address) as sock:
        samples = [rtt_ms(sock) for _ in range(16)]
    # uniform 50..150 ms: the mean of 16 has a standard error of ~7 ms; allow 30 ms either way
    assert 70 <= statistics.mean(samples) <= 130, samples
    assert min(samples) >= 48, samples
    assert max(samples) <= 150 + 100, samples


def test_latency_applies_to_a_connection_opened_before_it(proxy: Proxy) -> None:
    with connect(proxy.listen_address) as sock:
        assert rtt_ms(sock) < 50
        proxy.add_toxic("latency", stream="upstream", latency=150)
        assert rtt_ms(sock) >= 145
        proxy.remove_toxic("latency_upstream")
        assert rtt_ms(sock) < 50


def test_latency_on_both_streams_adds_up(proxy: Proxy) -> None:
    proxy.add_toxic("latency", stream="upstream", latency=60)
    proxy.add_toxic("latency", stream="downstream", latency=60)
    with connect(proxy.listen_address) as sock:
        assert 115 <= rtt_ms(sock) <= 400


def test_latency_delays_are_pipelined_and_never_reorder(proxy: Proxy) -> None:
    """Many small writes with heavy jitter: each chunk is delayed, none overtakes another, and the
    total is about one latency (delays overlap), not one latency per chunk."""
    proxy.add_toxic("latency", latency=80, jitter=70)
    data = pattern(64 * 200)
    with connect(proxy.listen_address) as sock:
        start = time.monotonic()
        for i in range(0, len(data), 64):
            sock.sendall(data[i : i + 64])
        assert recv_exactly(sock, len(data), timeout=10) == data
        assert time.monotonic() - start < 2.0


def test_removing_a_toxic_flushes_held_bytes_intact_and_in_order(proxy: Proxy) -> None:
    proxy.add_toxic("latency", latency=10_000)
    data = pattern(256 * 1024)
    with connect(proxy.listen_address) as sock:
        sender = threading.Thread(target=sock.sendall, args=(data,))
        sender.start()
        wait_for(lambda: proxy.stats()["bytes_upstream"] == len(data), what="all bytes to reach the server")
        proxy.remove_toxic("latency_downstream")
        start = time.monotonic()
        assert recv_exactly(sock, len(data), timeout=5) == data
        assert time.monotonic() - start < 2.0  # full speed again, not 10 s
        sender.join(5)


def test_bandwidth_limits_the_rate(proxy: Proxy) -> None:
    proxy.add_toxic("bandwidth", rate=100)  # 100 KB/s
    data = pattern(50_000)
    with connect(proxy.listen_address) as sock:
        start = time.monotonic()
        sock.sendall(data)
        assert recv_exactly(sock, len(data), timeout=10) == data
        elapsed = time.monotonic() - start
    assert 0.4 <= elapsed <= 1.5, elapsed  # 0.5 s at exactly 100 KB/s


def test_slow_close_delays_only_the_close(proxy: Proxy) -> None:
    proxy.add_toxic("slow_close", delay=300)
    with connect(proxy.listen_address) as sock:
        assert rtt_ms(sock) < 100  # data is not delayed
        start = time.monotonic()
        sock.shutdown(socket.SHUT_WR)  # echo server closes in turn; its FIN is held back
        assert recv_until_eof(sock) == b""
        assert 0.28 <= time.monotonic() - start <= 2.0


def test_timeout_stops_data_then_closes(proxy: Proxy) -> None:
    proxy.add_toxic("timeout", timeout=300)
    with connect(proxy.listen_address) as sock:
        start = time.monotonic()
        sock.sendall(b"anyone?")
        assert recv_until_eof(sock, timeout=5) == b""  # no data, then EOF
        assert 0.28 <= time.monotonic() - start <= 2.0


def test_timeout_zero_holds_forever_and_removal_closes_the_connections_it_held(proxy: Proxy) -> None:
    """As in Toxiproxy (its timeout toxic's cleanup): removing the toxic ends what it held, and the
    held bytes are never delivered; connections opened afterwards flow normally."""
    proxy.add_toxic("timeout", stream="upstream", timeout=0)
    with connect(proxy.listen_address) as sock:
        sock.sendall(b"held")
        assert nothing_arrives(sock, 0.4)
        proxy.remove_toxic("timeout_upstream")
        assert recv_until_eof(sock) == b""
    assert proxy.wait_connections(0)
    with connect(proxy.listen_address) as sock:
        assert rtt_ms(sock) < 100


def test_reset_peer_resets_after_the_timeout(proxy: Proxy) -> None:
    with connect(proxy.listen_address) as sock:
        rtt_ms(sock)
        start = time.monotonic()
        proxy.add_toxic("reset_peer", timeout=200)
        with pytest.raises(ConnectionResetError):
            recv_until_eof(sock, timeout=5)
        assert 0.18 <= time.monotonic() - start <= 2.0
    assert proxy.wait_connections(0)


def test_slicer_cuts_data_into_small_pieces(proxy: Proxy) -> None:
    proxy.add_toxic("slicer", average_size=10, size_variation=5, delay=2000)
    data = pattern(600)
    reads = 0
    with connect(proxy.listen_address) as sock:
        sock.sendall(data)
        got = bytearray()
        while len(got) < len(data):
            got += recv_exactly(sock, 1) + sock.recv(4096)  # whatever arrived together
            reads += 1
    assert bytes(got) == data
    assert reads >= 20  # ~60 slices 2 ms apart; a few may coalesce on a busy machine


def test_limit_data_closes_after_exactly_n_bytes(proxy: Proxy) -> None:
    proxy.add_toxic("limit_data", bytes=1000)
    data = pattern(5000)
    with connect(proxy.listen_address) as sock:
        sock.sendall(data)
        assert recv_until_eof(sock) == data[:1000]
    assert proxy.wait_connections(0)


def test_blackhole_drop_discards_and_keeps_the_connection_open(proxy: Proxy) -> None:
    proxy.add_toxic("blackhole", stream="upstream")
    with connect(proxy.listen_address) as sock:
        sock.sendall(b"lost")
        assert nothing_arrives(sock, 0.3)
        assert proxy.connections == 1
        proxy.remove_toxic("blackhole_upstream")
        assert rtt_ms(sock, b"next") < 100
        assert nothing_arrives(sock, 0.1)  # "lost" never comes


def test_blackhole_hold_pushes_back_and_delivers_on_removal() -> None:
    server = Recorder()
    try:
        with Proxy("hold", upstream=server.address, seed=1) as proxy, connect(proxy.listen_address) as sock:
            proxy.add_toxic("blackhole", stream="upstream", mode="hold")
            data = pattern(64 << 20)  # more than the proxy queue and (autotuned) socket buffers hold
            sent = [0]

            def send() -> None:
                view = memoryview(data)
                while sent[0] < len(data):
                    sent[0] += sock.send(view[sent[0] : sent[0] + 65536])

            sock.settimeout(10)
            sender = threading.Thread(target=send)
            sender.start()
            wait_for(lambda: sent[0] > 0, what="the first send")
            sender.join(1.0)
            assert sender.is_alive(), "the sender should be blocked by back-pressure"
            assert server.got() == b""
            proxy.remove_toxic("blackhole_upstream")
            sender.join(10)
            wait_for(lambda: len(server.got()) == len(data), timeout=10, what="held data to arrive")
            assert server.got() == data
    finally:
        server.close()


def test_a_chain_that_meets_a_full_destination_mid_chunk_delivers_every_byte_in_order() -> None:
    """Two slicers turn each read into hundreds of slices, and the reader takes nothing until the proxy holds
    bytes it cannot send: the chain must stop where it is and go on from there (each slicer's generator
    kept, the inner one first), not lose, repeat or reorder a slice."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with Proxy("slow-reader", upstream=listener.getsockname(), seed=1) as proxy:
            proxy.add_toxic("slicer", name="coarse", stream="upstream", average_size=4000, delay=0)
            proxy.add_toxic("slicer", name="fine", stream="upstream", average_size=400, size_variation=200, delay=0)
            data = pattern(16 << 20)  # more than the socket buffers on the way hold
            with connect(proxy.listen_address, timeout=30) as sock:
                sender = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
                sender.start()
                peer, _ = listener.accept()
                with peer:
                    wait_for(lambda: proxy.stats()["bytes_held"] > 0, timeout=20, what="the destination to fill")
                    got = recv_exactly(peer, len(data), timeout=60)
                sender.join(10)
    assert got == data


def test_stacked_toxics_compose(proxy: Proxy) -> None:
    proxy.add_toxic("latency", latency=80)
    proxy.add_toxic("slicer", name="slices", average_size=3, delay=0)
    proxy.add_toxic("latency", name="more", stream="upstream", latency=40)
    with connect(proxy.listen_address) as sock:
        assert 115 <= rtt_ms(sock, b"0123456789") <= 500
