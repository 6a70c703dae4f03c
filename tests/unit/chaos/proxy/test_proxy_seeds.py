"""One seed replays the fault proxy: per-connection random streams, counted toxicity decisions (issue 10)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.chaos.proxy.proxy_helpers import connect, recv_exactly

from k2.chaos.proxy import Chunk, EchoServer, Proxy, ProxyServer, Toxic, ToxicContext, register
from k2.chaos.session import ChaosSession, ServiceTargets
from k2.chaos.targets.proxy import ProxyTarget

DRAWS: list[tuple[int, float]] = []


@register
class _Draws(Toxic):
    """Records what each connection's random stream gives, drawn as the latency toxic draws its jitter."""

    type_name = "test_draws"

    def pipe(self, chunk: Chunk, ctx: ToxicContext) -> Iterator[Chunk]:
        DRAWS.append((chunk.data[0], ctx.rng.uniform(-50, 50)))
        yield chunk


def _run(proxy: Proxy, connections: int = 12) -> tuple[list[tuple[int, float]], dict]:
    """Open connections one after another, one round trip each; what the toxics drew and decided."""
    DRAWS.clear()
    for i in range(connections):
        with connect(proxy.listen_address) as sock:
            sock.sendall(bytes([i]))
            assert recv_exactly(sock, 1) == bytes([i])
    assert proxy.wait_connections(0)
    return list(DRAWS), proxy.decisions()


@pytest.fixture
def seeded(echo: EchoServer) -> Iterator[Proxy]:
    with Proxy("seeded", upstream=echo.address, seed=1) as proxy:
        proxy.add_toxic("test_draws", stream="upstream", toxicity=0.5)
        proxy.add_toxic("latency", stream="downstream", latency=1, jitter=1, toxicity=0.5)
        yield proxy


def test_the_same_seed_replays_the_draws_and_the_decisions(seeded: Proxy) -> None:
    seeded.set_seed(7)
    first = _run(seeded)
    draws, decisions = first
    assert 0 < len(draws) < 12  # toxicity 0.5: some connections got the toxic, some did not
    assert decisions["test_draws_upstream"] == {"applied": len(draws), "skipped": 12 - len(draws)}
    assert sum(decisions["latency_downstream"].values()) == 12
    seeded.set_seed(7)  # a new session with the same seed, on the same long-lived proxy
    assert _run(seeded) == (draws, {k: {"applied": 2 * v["applied"], "skipped": 2 * v["skipped"]}
                                    for k, v in decisions.items()})  # fmt: skip
    seeded.set_seed(8)
    assert _run(seeded)[0] != draws


def test_a_proxy_created_with_the_seed_matches_one_seeded_later(echo: EchoServer, seeded: Proxy) -> None:
    seeded.set_seed(7)
    later = _run(seeded)
    with Proxy("seeded", upstream=echo.address, seed=7) as fresh:
        fresh.add_toxic("test_draws", stream="upstream", toxicity=0.5)
        fresh.add_toxic("latency", stream="downstream", latency=1, jitter=1, toxicity=0.5)
        assert _run(fresh) == later


def test_decisions_reach_the_unshape_effect_and_the_session_seeds_the_proxy(echo: EchoServer, tmp_path: Path) -> None:
    with ProxyServer(api=("127.0.0.1", 0), seed=3) as server:
        proxy = server.create("svc", echo.address)
        target = ProxyTarget("svc", server.api_url)
        with ChaosSession([ServiceTargets("svc", target)], tmp_path / "journal.jsonl", seed=99, watchdog=False) as s:
            assert server.seed == proxy.seed == s.fault_proxy_seed is not None
        target.shape("latency", toxicity=0.5, attributes={"latency": 1})
        for _ in range(10):
            with connect(proxy.listen_address) as sock:
                sock.sendall(b"x")
                recv_exactly(sock, 1)
        effect = target.unshape()
        counts = effect.detail["toxicity_decisions"]["k2_latency_downstream"]
        assert counts["applied"] + counts["skipped"] == 10 and 0 < counts["applied"] < 10
        assert proxy.toxics() == []
