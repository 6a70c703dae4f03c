"""The platform's query API (k2.platform.api) as a stack service: a host process on every backend, like
the schema registry, reaching S3 and the catalog through the fault proxy as every client does."""

from __future__ import annotations

import json
import sys
import urllib.request

from k2.stack.services.base import HOST, Layout, Service, base_env
from k2.stack.state import Address, ServiceState, StackState

NAME = "api"
# Small enough that a chaos scenario can exhaust one client in a second, large enough for normal use.
RATE_PER_CLIENT = 20
BURST_PER_CLIENT = 40
BREAKER_FAILURES = 3
BREAKER_RESET_S = 3
QUERY_TIMEOUT_S = 5


class QueryApi(Service):
    name = NAME
    role = "query API over the lakehouse (k2.platform.api): rate limits, circuit breaker"
    depends_on = ("s3", "postgres")

    def port_names(self) -> tuple[str, ...]:
        return (NAME,)

    def plan(self, layout: Layout, stack: StackState, ports: dict[str, int]) -> ServiceState:
        from k2.stack.endpoints import lakehouse_env

        home = layout.service_dir(self.name)
        address = Address(HOST, ports[NAME])
        argv = [
            sys.executable, "-m", "k2.platform.api", "--host", HOST, "--port", str(address.port),
            "--rate", str(RATE_PER_CLIENT), "--burst", str(BURST_PER_CLIENT),
            "--breaker-failures", str(BREAKER_FAILURES), "--breaker-reset", str(BREAKER_RESET_S),
            "--query-timeout", str(QUERY_TIMEOUT_S),
        ]  # fmt: skip
        return ServiceState(
            name=self.name,
            listen=address,
            advertised=Address(address.host, address.port),
            log=str(layout.log_file(self.name)),
            argv=argv,
            # the storage addresses clients use (through the fault proxy) and their credentials
            env=base_env(home) | {"PYTHONUNBUFFERED": "1"} | lakehouse_env(stack),
            cwd=str(home),
        )

    def prepare(self, layout: Layout, stack: StackState, svc: ServiceState) -> None:
        layout.service_dir(self.name).mkdir(parents=True, exist_ok=True)

    def check(self, stack: StackState, svc: ServiceState, timeout: float) -> str:
        with urllib.request.urlopen(f"http://{svc.advertised}/health", timeout=timeout) as response:
            health = json.loads(response.read())
        return f"circuit {health['breaker']['state']}"
