"""The proxy's HTTP API driven by the Chaos Toolkit toxiproxy extension (`chaostoolkit-toxiproxy`), unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from chaostoxi.proxy import actions as proxy_actions
from chaostoxi.proxy import probes as proxy_probes
from chaostoxi.toxic import actions as toxic_actions
from tests.unit.chaos.proxy.proxy_helpers import connect, rtt_ms

from k2.chaos.proxy import EchoServer, ProxyServer

pytestmark = pytest.mark.integration


@pytest.fixture
def configuration() -> Iterator[tuple[ProxyServer, dict[str, Any]]]:
    with ProxyServer(api=("127.0.0.1", 0), seed=5) as server:
        yield server, {"toxiproxy_host": "127.0.0.1", "toxiproxy_port": server.api_address[1]}


def test_every_toxic_action_of_the_extension(configuration: tuple[ProxyServer, dict[str, Any]]) -> None:
    server, cfg = configuration
    with EchoServer() as echo:
        upstream_port = echo.address[1]
        assert proxy_actions.create_proxy("svc", "127.0.0.1", upstream_port, listen_host="127.0.0.1", configuration=cfg)
        assert proxy_probes.proxy_exist("svc", configuration=cfg)
        address = ("127.0.0.1", int(cfg["svc_PORT"]))
        with connect(address) as sock:
            toxic_actions.create_latency_toxic("svc", "lat", 120, 0, configuration=cfg)
            assert rtt_ms(sock) >= 115
            toxic_actions.delete_toxic("svc", "lat", configuration=cfg)
            assert rtt_ms(sock) < 100
        toxic_actions.create_bandwith_degradation_toxic("svc", "bw", 100, configuration=cfg)
        toxic_actions.create_slicer_toxic("svc", "sl", 10, 2, 5, configuration=cfg)
        toxic_actions.create_timeout_toxic("svc", "to", 1000, configuration=cfg)
        toxic_actions.create_limiter_toxic("svc", "lim", 1000, configuration=cfg)
        toxic_actions.create_slow_connection_close_toxic("svc", "sc", 1000, configuration=cfg)
        assert {t.name for t in server.get("svc").toxics()} == {"bw", "sl", "to", "lim", "sc"}
        proxy_actions.disable_proxy("svc", configuration=cfg)
        assert proxy_probes.get_proxy_attribute("svc", "enabled", configuration=cfg) is False
        proxy_actions.enable_proxy("svc", configuration=cfg)
        proxy_actions.reset(configuration=cfg)
        assert server.get("svc").toxics() == []
        proxy_actions.delete_proxy("svc", configuration=cfg)
        assert server.proxies() == []
