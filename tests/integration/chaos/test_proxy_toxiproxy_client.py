"""The proxy's HTTP API driven by the real Toxiproxy client (`toxiproxy-python`), as other tools would.

The API server, the echo service and every proxy are started here and stopped in teardown.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import toxiproxy
from tests.unit.chaos.proxy.proxy_helpers import connect, rtt_ms
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import NotFound, ProxyExists

from k2.chaos.proxy import EchoServer, ProxyServer

pytestmark = pytest.mark.integration


@pytest.fixture
def client() -> Iterator[toxiproxy.Toxiproxy]:
    saved = (APIConsumer.host, APIConsumer.port)  # the client keeps its address in class attributes
    with ProxyServer(api=("127.0.0.1", 0), seed=11) as server:
        toxi = toxiproxy.Toxiproxy()
        toxi.update_api_consumer(*server.api_address)
        yield toxi
        toxi.destroy_all()
    APIConsumer.host, APIConsumer.port = saved


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with EchoServer("echo") as server:
        yield server


def _address(listen: str) -> tuple[str, int]:
    host, port = listen.rsplit(":", 1)
    return host, int(port)


def test_latency_toxic_through_the_toxiproxy_client(client: toxiproxy.Toxiproxy, echo: EchoServer) -> None:
    assert client.running()
    assert b"+k2." in client.version()
    proxy = client.create(upstream=f"127.0.0.1:{echo.address[1]}", name="echo")
    assert proxy.enabled is True and set(client.proxies()) == {"echo"}
    with pytest.raises(ProxyExists):
        client.create(upstream=f"127.0.0.1:{echo.address[1]}", name="echo")

    with connect(_address(proxy.listen)) as sock:
        baseline = rtt_ms(sock)
        proxy.add_toxic(type="latency", attributes={"latency": 150, "jitter": 0})
        toxic = proxy.get_toxic("latency_downstream")
        assert (toxic.type, toxic.stream, toxic.attributes["latency"]) == ("latency", "downstream", 150)
        slow = [rtt_ms(sock) for _ in range(3)]
        assert min(slow) >= 145, (baseline, slow)  # the open connection got the toxic

        assert proxy.destroy_toxic("latency_downstream")
        assert proxy.toxics() == {}
        assert rtt_ms(sock) < 60

    assert proxy.destroy()
    assert client.proxies() == {}
    with pytest.raises(NotFound):
        proxy.destroy()


def test_down_and_populate(client: toxiproxy.Toxiproxy, echo: EchoServer) -> None:
    upstream = f"127.0.0.1:{echo.address[1]}"
    created = client.populate([{"name": "a", "upstream": upstream, "listen": "127.0.0.1:0"}])
    assert [p.name for p in created] == ["a"]
    proxy = client.get_proxy("a")
    address = _address(proxy.listen)
    with proxy.down():
        with pytest.raises(ConnectionRefusedError):
            connect(address)
        assert client.get_proxy("a").enabled is False
    with connect(address) as sock:
        rtt_ms(sock)
    proxy.add_toxic(type="timeout", stream="upstream", attributes={"timeout": 0})
    assert client.reset()
    assert client.get_proxy("a").toxics() == {}
