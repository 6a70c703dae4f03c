"""Partitions: refuse and blackhole, one-way, and partial by client label."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.unit.chaos.proxy.proxy_helpers import (
    Recorder,
    connect,
    nothing_arrives,
    recv_exactly,
    recv_until_eof,
    rtt_ms,
    wait_for,
)

from k2.chaos.errors import InvalidFault
from k2.chaos.proxy import Proxy


def test_refuse_resets_open_connections_and_refuses_new_ones(proxy: Proxy) -> None:
    address = proxy.listen_address
    sock = connect(address)
    rtt_ms(sock)
    with proxy.partition("refuse") as partition:
        with pytest.raises(ConnectionResetError):
            recv_until_eof(sock)
        with pytest.raises(ConnectionRefusedError):
            connect(address)
        assert partition.active
    assert not partition.active
    with connect(address) as again:
        rtt_ms(again)
    partition.restore()  # idempotent


def test_blackhole_accepts_connections_but_nothing_flows(proxy: Proxy) -> None:
    old = connect(proxy.listen_address)
    rtt_ms(old)
    partition = proxy.partition("blackhole")
    new = connect(proxy.listen_address)  # connect succeeds
    for sock in (old, new):
        sock.sendall(b"hello?")
        assert nothing_arrives(sock, 0.3)
    partition.restore()
    for sock in (old, new):  # held, not lost: a healed partition delivers what was in flight
        assert recv_exactly(sock, 6) == b"hello?"
        sock.close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder(greeting=b"hi")
    yield server
    server.close()


def test_one_way_upstream_partition(recorder: Recorder) -> None:
    with Proxy("oneway", upstream=recorder.address, seed=1) as proxy:
        with proxy.partition("blackhole", direction="upstream"), connect(proxy.listen_address) as sock:
            assert recv_exactly(sock, 2) == b"hi"  # server -> client still flows
            sock.sendall(b"request")
            recorder.send_all_clients(b"push")
            assert recv_exactly(sock, 4) == b"push"
            assert recorder.got() == b""  # client -> server does not
        wait_for(lambda: recorder.got() == b"request", what="held request after restore")


def test_one_way_downstream_partition(recorder: Recorder) -> None:
    with Proxy("oneway", upstream=recorder.address, seed=1) as proxy:
        # Partitioned before the client connects: the server greets at once, so a partition applied after
        # the connect races with the greeting (this failed on the thread-per-link proxy too).
        partition = proxy.partition("blackhole", direction="downstream")
        sock = connect(proxy.listen_address)
        with partition:
            sock.sendall(b"request")
            wait_for(lambda: recorder.got() == b"request", what="request to reach the server")
            assert nothing_arrives(sock, 0.3)  # the greeting is stuck
        assert recv_exactly(sock, 2) == b"hi"
        sock.close()


def test_partial_partition_cuts_one_client_label_only(proxy: Proxy) -> None:
    a_addr, b_addr = proxy.client_listener("a"), proxy.client_listener("b")
    assert proxy.client_listener("a") == a_addr  # idempotent
    a, b = connect(a_addr), connect(b_addr)
    rtt_ms(a), rtt_ms(b)
    assert proxy.stats()["connections_by_client"] == {"default": 0, "a": 1, "b": 1}

    with proxy.partition("refuse", clients=["a"]):
        with pytest.raises(ConnectionResetError):
            recv_until_eof(a)
        with pytest.raises(ConnectionRefusedError):
            connect(a_addr)
        assert rtt_ms(b) < 100
        with connect(b_addr) as b2, connect(proxy.listen_address) as default:
            rtt_ms(b2), rtt_ms(default)

    a = connect(a_addr)
    with proxy.partition("blackhole", clients=["a"]):
        a.sendall(b"stuck")
        assert nothing_arrives(a, 0.3)
        assert rtt_ms(b) < 100
    assert recv_exactly(a, 5) == b"stuck"
    a.close()
    b.close()


def test_a_client_listener_created_during_a_full_refuse_partition_is_refused_too(proxy: Proxy) -> None:
    with proxy.partition("refuse"):
        late = proxy.client_listener("late")
        with pytest.raises(ConnectionRefusedError):
            connect(late)
    with connect(late) as sock:
        rtt_ms(sock)


def test_partitions_nest_with_disable_and_reset_lifts_everything(proxy: Proxy) -> None:
    address = proxy.listen_address
    partition = proxy.partition("refuse")
    proxy.disable()
    partition.restore()
    with pytest.raises(ConnectionRefusedError):
        connect(address)  # still disabled
    proxy.partition("blackhole", direction="upstream")
    proxy.partition("refuse")
    proxy.reset()
    assert proxy.toxics() == [] and proxy.enabled
    with connect(address) as sock:
        rtt_ms(sock)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"mode": "drop"}, "mode 'drop' is unknown"),
        ({"direction": "sideways"}, "direction 'sideways' is unknown"),
        ({"mode": "refuse", "direction": "upstream"}, "use mode='blackhole'"),
        ({"clients": ["ghost"]}, "client_listener"),
        ({"clients": []}, "non-empty list"),
    ],
)
def test_invalid_partitions_are_rejected(proxy: Proxy, kwargs: dict, fragment: str) -> None:
    with pytest.raises(InvalidFault) as info:
        proxy.partition(**kwargs)
    assert fragment in str(info.value)
    assert proxy.toxics() == []
