"""The stack's services as chaos targets: each a process tree K2 started, restartable by `k2 stack start`."""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING

from k2.chaos.targets import Probe, Target
from k2.chaos.targets.disk import DiskTarget
from k2.chaos.targets.process import ProcessSpec, ProcessTarget
from k2.chaos.targets.proxy import ProxyTarget
from k2.stack import state as statefile
from k2.stack.services.fault_proxy import NAME as FAULT_PROXY

if TYPE_CHECKING:
    from k2.stack.local import LocalStack


def process_targets(stack: LocalStack, run_id: str = "") -> dict[str, Target]:
    """One target per running service: its container on the docker backend, else its process tree (restarted
    by `k2 stack start SERVICE --data-dir DIR`)."""
    state = stack.state()
    targets: dict[str, Target] = {}
    for name, svc in state.services.items():
        if svc.container is not None:
            from k2.chaos.targets.docker import DockerTarget

            targets[name] = DockerTarget(svc.container, project=state.project, name=name)
            continue
        if svc.process is None:
            continue
        spec = ProcessSpec.from_dict(
            {
                "name": name,
                "pid": svc.process.pid,
                "starttime": svc.process.starttime,
                "restart_argv": [sys.executable, "-m", "k2", "stack", "start", name, "--data-dir", str(stack.data_dir)],
                "stop_signal": svc.stop_signal,
                "state_file": str(statefile.state_path(stack.data_dir)),
                "service": name,
                "run_id": run_id,
            }
        )
        targets[name] = ProcessTarget(spec)
    return targets


def proxy_targets(stack: LocalStack) -> dict[str, ProxyTarget]:
    """Each service as reached through the fault proxy, for network faults."""
    state = stack.state()
    api = f"http://{state.services[FAULT_PROXY].advertised}"
    return {name: ProxyTarget(name, api) for name in state.services if name != FAULT_PROXY}


def disk_targets(stack: LocalStack) -> dict[str, DiskTarget]:
    """The broker's log filesystem (kafka-store's size-limited disk), reachable as `kafka` and `kafka-store`."""
    store = stack.data_dir / "kafka-store" / "data"
    if not os.path.ismount(store):
        return {}
    return {name: DiskTarget(name, str(store)) for name in ("kafka", "kafka-store")}


def health_probes(stack: LocalStack) -> dict[str, Probe]:
    """probe(timeout) -> True when the service answered its health check in time (a frozen one never does)."""
    state = stack.state()

    def probe_for(name: str) -> Probe:
        def probe(timeout: float) -> bool:
            answered: list[bool] = []

            def check() -> None:
                try:
                    stack.services[name].check(state, state.services[name], timeout)
                    answered.append(True)
                except Exception:
                    answered.append(False)

            # A refused connection fails at once; only a silent (frozen, black-holed) service costs the timeout.
            worker = threading.Thread(target=check, daemon=True, name=f"probe-{name}")
            worker.start()
            worker.join(timeout + 0.5)
            return bool(answered and answered[0])

        return probe

    return {name: probe_for(name) for name in state.services}
