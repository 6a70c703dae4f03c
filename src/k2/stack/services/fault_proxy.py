"""The fault proxy in front of every service: clients connect to it, it forwards to the real port."""

from __future__ import annotations

import json
import sys
import urllib.request

from k2.stack.services.base import HOST, Layout, Service, base_env
from k2.stack.services.kafka import is_broker
from k2.stack.state import Address, ServiceState, StackState

NAME = "fault-proxy"
# client.id values the proxy recognises on Kafka connections, so a partial partition can cut one
# named client (e.g. the producer) and not another; clients set `client.id` to one of these.
KAFKA_CLIENT_LABELS = {label: label for label in ("producer", "consumer", "writer", "admin", "checker")}
# Services that allow changes only to the stack's owner, by the uid owning the caller's socket
# (k2.httpsafe): through the proxy they would see the proxy's uid for every caller, so their proxies
# admit only the owner's and root's sockets and answer others 403, as the services themselves do. The
# query API (`api`) only reads; the other services have their own credentials.
OWNER_ONLY = frozenset({"schema-registry"})


class FaultProxy(Service):
    name = NAME
    role = "fault proxy (Toxiproxy-compatible API) in front of every service"

    def port_names(self) -> tuple[str, ...]:
        return ("api",)

    def plan(self, layout: Layout, stack: StackState, ports: dict[str, int]) -> ServiceState:
        home = layout.service_dir(self.name)
        api = Address(HOST, ports["api"])
        argv = [sys.executable, "-m", "k2.chaos.proxy", "--api", str(api), "--config", str(home / "proxies.json")]
        return ServiceState(
            name=self.name,
            listen=api,
            advertised=Address(api.host, api.port),
            log=str(layout.log_file(self.name)),
            argv=argv,
            env=base_env(home) | {"PYTHONUNBUFFERED": "1"},
            cwd=str(home),
        )

    def ports_to_bind(self, stack: StackState, svc: ServiceState) -> list[tuple[str, int]]:
        """Its API, and every service's client-facing port (named after that service)."""
        fronted = [(o.name, o.advertised.port) for o in stack.services.values() if o.name != self.name]
        return [(self.name, svc.listen.port), *fronted]

    def prepare(self, layout: Layout, stack: StackState, svc: ServiceState) -> None:
        """Write one proxy per service: listen on its advertised address, forward to its real one."""
        home = layout.service_dir(self.name)
        home.mkdir(parents=True, exist_ok=True)
        proxies = []
        for other in stack.services.values():
            if other.name == self.name:
                continue
            spec: dict[str, object] = {
                "name": other.name,
                "listen": str(other.advertised),
                "upstream": str(other.listen),
            }
            if is_broker(other.name):
                spec["kafka_client_ids"] = KAFKA_CLIENT_LABELS
            if other.name in OWNER_ONLY:
                spec["owner_only"] = True
                spec["refuse_as"] = "http"
            proxies.append(spec)
        (home / "proxies.json").write_text(json.dumps({"proxies": proxies}, indent=2))

    def check(self, stack: StackState, svc: ServiceState, timeout: float) -> str:
        with urllib.request.urlopen(f"http://{svc.advertised}/proxies", timeout=timeout) as response:
            proxies = json.loads(response.read())
        disabled = [name for name, p in proxies.items() if not p.get("enabled", True)]
        return f"{len(proxies)} proxies" + (f", disabled: {', '.join(disabled)}" if disabled else "")
