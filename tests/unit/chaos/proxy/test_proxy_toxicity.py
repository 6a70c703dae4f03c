"""Toxicity: 0 never applies, 1 always does, and in between the choice replays from the seed."""

from __future__ import annotations

from tests.unit.chaos.proxy.proxy_helpers import connect, recv_exactly

from k2.chaos.proxy import EchoServer, Proxy


def _affected(proxy: Proxy, connections: int) -> list[bool]:
    """Which of `connections` successive connections a `limit_data` toxic with `bytes=0` hit.

    A hit connection is closed at its first byte, a spared one echoes it: both answers come at once.
    """
    out = []
    for _ in range(connections):
        with connect(proxy.listen_address) as sock:
            sock.sendall(b"probe")
            try:
                out.append(recv_exactly(sock, 5) != b"probe")
            except ConnectionError:
                out.append(True)
    return out


def test_toxicity_zero_has_no_effect(proxy: Proxy) -> None:
    proxy.add_toxic("limit_data", stream="upstream", bytes=0, toxicity=0.0)
    assert _affected(proxy, 8) == [False] * 8


def test_toxicity_one_always_applies(proxy: Proxy) -> None:
    proxy.add_toxic("limit_data", stream="upstream", bytes=0, toxicity=1.0)
    assert _affected(proxy, 6) == [True] * 6


def test_seeded_toxicity_replays(echo: EchoServer) -> None:
    def run(seed: int) -> list[bool]:
        with Proxy("seeded", upstream=echo.address, seed=seed) as proxy:
            proxy.add_toxic("limit_data", stream="upstream", bytes=0, toxicity=0.5)
            return _affected(proxy, 12)

    first = run(7)
    assert run(7) == first
    assert 0 < sum(first) < 12  # both outcomes occur at 0.5
    assert run(8) != first or run(9) != first  # another seed gives other choices
