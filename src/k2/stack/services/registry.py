"""The schema registry (K2's own, Confluent-compatible), run as a process like every other service."""

from __future__ import annotations

import json
import sys
import urllib.request

from k2.stack.services.base import HOST, Layout, Service, base_env
from k2.stack.state import Address, ServiceState, StackState


class SchemaRegistry(Service):
    name = "schema-registry"
    role = "Confluent-compatible schema registry (k2.platform.registry), file-backed"

    def port_names(self) -> tuple[str, ...]:
        return ("schema-registry",)

    def plan(self, layout: Layout, stack: StackState, ports: dict[str, int]) -> ServiceState:
        home = layout.service_dir(self.name)
        address = Address(HOST, ports["schema-registry"])
        argv = [
            sys.executable, "-m", "k2.platform.registry",
            "--host", HOST, "--port", str(address.port), "--data-dir", str(home / "data"),
        ]  # fmt: skip
        return ServiceState(
            name=self.name,
            listen=address,
            advertised=Address(address.host, address.port),
            log=str(layout.log_file(self.name)),
            argv=argv,
            env=base_env(home) | {"PYTHONUNBUFFERED": "1"},
            cwd=str(home),
        )

    def prepare(self, layout: Layout, stack: StackState, svc: ServiceState) -> None:
        (layout.service_dir(self.name) / "data").mkdir(parents=True, exist_ok=True)

    def check(self, stack: StackState, svc: ServiceState, timeout: float) -> str:
        with urllib.request.urlopen(f"http://{svc.advertised}/subjects", timeout=timeout) as response:
            subjects = json.loads(response.read())
        return f"{len(subjects)} subject(s)"
