"""Toxiproxy 2.x semantics K2 follows (issue 11), and the bandwidth toxic's absolute timeline (issue 16)."""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace

import pytest
from tests.unit.chaos.proxy.proxy_helpers import Recorder, connect, pattern, recv_exactly, recv_until_eof, rtt_ms

from k2.chaos.proxy import Proxy, toxic_types
from k2.chaos.proxy.toxic import Chunk, Wait, create_toxic


def test_reset_peer_with_a_timeout_swallows_data_until_the_reset() -> None:
    """Toxiproxy's reset_peer: nothing gets through while the reset is pending (K2 used to pass data
    until the deadline)."""
    server = Recorder()
    try:
        with Proxy("rst", upstream=server.address, seed=1) as proxy:
            proxy.add_toxic("reset_peer", stream="upstream", timeout=600)
            with connect(proxy.listen_address) as sock:
                sock.sendall(b"swallowed")
                with pytest.raises(ConnectionResetError):
                    recv_until_eof(sock, timeout=5)
            assert server.got() == b""
    finally:
        server.close()


def test_noop_toxic_passes_everything(proxy: Proxy) -> None:
    assert "noop" in toxic_types()
    proxy.add_toxic("noop", stream="upstream")
    proxy.add_toxic("noop", stream="downstream")
    data = pattern(1 << 20)
    with connect(proxy.listen_address) as sock:
        sock.sendall(data[:1000])
        assert recv_exactly(sock, 1000) == data[:1000]
        sock.sendall(data[1000:])
        assert recv_exactly(sock, len(data) - 1000, timeout=20) == data[1000:]
        sock.shutdown(socket.SHUT_WR)
        assert recv_until_eof(sock) == b""


def test_removing_a_timeout_toxic_closes_only_what_it_held(proxy: Proxy) -> None:
    a_addr = proxy.client_listener("a")
    proxy.add_toxic("timeout", stream="upstream", timeout=0, clients=["a"])
    with connect(a_addr) as held, connect(proxy.listen_address) as free:
        held.sendall(b"held")
        assert rtt_ms(free) < 200
        proxy.remove_toxic("timeout_upstream")
        assert recv_until_eof(held) == b""
        assert rtt_ms(free) < 200  # a connection the toxic did not hold stays open


def _waits(toxic_type: str, chunk: Chunk, **attributes: object) -> list[float]:
    """Run a toxic's generator by hand, each wait ending whenever we resume it (late, as on a busy
    loop); returns the times it asked to wait until."""
    toxic = create_toxic(toxic_type, **attributes)
    ctx = SimpleNamespace(rng=None, started=0.0, label="default", state=None)
    ctx.state = toxic.new_state(ctx)  # type: ignore[arg-type]
    steps = iter(toxic.pipe(chunk, ctx))  # type: ignore[arg-type]
    waits: list[float] = []
    value = None
    while True:
        try:
            out = steps.send(value)  # type: ignore[attr-defined]
        except StopIteration:
            return waits
        value = True if isinstance(out, Wait) else None
        if isinstance(out, Wait):
            waits.append(out.until)


def test_bandwidth_slots_follow_an_absolute_timeline() -> None:
    """Ten slices of 100 ms each: slot ends at 0.1, 0.2, ... after the read, however late each wait
    ended (here: read long ago). The old code restarted from `now` after every late slice, so it
    drifted slow by the lateness of every timer."""
    rate_kbps = 10  # 10,000 B/s: 1,000-byte slices of 100 ms
    read_at = time.monotonic() - 60.0  # read a minute ago: every slot is already late
    waits = _waits("bandwidth", Chunk(b"x" * 10_000, read_at), rate=rate_kbps)
    assert waits == pytest.approx([read_at + 0.1 * (i + 1) for i in range(10)], abs=1e-9)
