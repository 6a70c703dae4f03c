"""Connections on two loops (the daemon's `--loops 2`): what the control loop does reaches every one of them."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.chaos.proxy.conftest import second_loop
from tests.unit.chaos.proxy.proxy_helpers import connect, recv_exactly, rtt_ms

from k2.chaos.proxy import EchoServer, Proxy
from k2.chaos.proxy.reactor import shared


@pytest.fixture
def two_loop_proxy(echo: EchoServer) -> Iterator[Proxy]:
    with Proxy("two", upstream=echo.address, seed=42, loops=[shared(), second_loop()]) as p:
        yield p


def test_connections_are_dealt_between_the_loops_and_toxics_reach_both(two_loop_proxy: Proxy) -> None:
    proxy = two_loop_proxy
    socks = [connect(proxy.listen_address) for _ in range(6)]
    try:
        for sock in socks:
            assert rtt_ms(sock) < 1000
        threads = {link.reactor for link in proxy._open_links()}
        assert threads == {shared(), second_loop()}, "every connection landed on one loop"
        proxy.add_toxic("latency", name="slow", latency=150)
        assert all(rtt_ms(sock) >= 150 for sock in socks), "a toxic missed the connections on one loop"
        proxy.remove_toxic("slow")
        assert all(rtt_ms(sock) < 150 for sock in socks)
        assert proxy.stats()["connections"] == 6
        proxy.disable()  # closes every open connection, on both loops
        for sock in socks:
            sock.settimeout(5)
            assert sock.recv(1) == b""
        assert proxy.wait_connections(0, timeout=10)
    finally:
        for sock in socks:
            sock.close()


def test_toxics_changing_while_connections_come_and_go_lose_and_mix_nothing(two_loop_proxy: Proxy) -> None:
    """Clients on both loops open, echo and close connections while the control loop adds, updates and
    removes toxics: every byte comes back in order, nothing fails, every connection ends, counts add up."""
    proxy = two_loop_proxy
    failures: list[BaseException] = []
    stop = threading.Event()
    trips = [0]

    def client(n: int) -> None:
        try:
            while not stop.is_set():
                with connect(proxy.listen_address) as sock:
                    for i in range(5):
                        message = b"%03d:%04d" % (n, i)
                        sock.sendall(message)
                        assert recv_exactly(sock, len(message), timeout=10) == message
                        trips[0] += 1
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    workers = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for worker in workers:
        worker.start()
    try:
        for round_ in range(30):
            proxy.add_toxic("latency", name="lat", latency=1, jitter=1, toxicity=0.5)
            proxy.add_toxic("noop", name="noop", stream="upstream")
            proxy.update_toxic("lat", latency=2)
            proxy.remove_toxic("noop")
            proxy.remove_toxic("lat")
            assert proxy.stats()["connections"] >= 0, round_
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    assert not failures, failures[:3]
    assert trips[0] > 0
    assert proxy.wait_connections(0, timeout=10)
    assert proxy.decisions() == {}


@pytest.mark.parametrize("value", ["0", "17", "x"])
def test_the_daemon_refuses_a_loop_count_it_cannot_use(value: str, tmp_path: Path) -> None:
    config = tmp_path / "proxies.json"
    config.write_text('{"proxies": []}')
    argv = [sys.executable, "-m", "k2.chaos.proxy", "--config", str(config), "--loops", value]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "loops" in done.stderr and ("1 to 16" in done.stderr or "invalid int" in done.stderr), done.stderr
    assert "Traceback" not in done.stderr
