"""A stack's services as chaos targets: which backend serves which capability of each service.

- network faults go through the fault proxy every service sits behind (no privilege, any kernel);
- disk faults go to the broker's store filesystem (kafka-store's size-limited disk), as `kafka` and
  `kafka-store`;
- everything else to the service itself: its container on the docker backend, else its process tree
  (restarted by `k2 stack start SERVICE --data-dir DIR`).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from typing import TYPE_CHECKING

from k2.chaos.session import ServiceTargets
from k2.chaos.targets.base import Probe, Target
from k2.chaos.targets.clock import ClockTarget
from k2.chaos.targets.disk import DiskTarget
from k2.chaos.targets.process import ProcessSpec, ProcessTarget
from k2.chaos.targets.proxy import ProxyTarget
from k2.stack import clocks
from k2.stack import state as statefile
from k2.stack.services.fault_proxy import NAME as FAULT_PROXY
from k2.stack.services.kafka import is_broker

if TYPE_CHECKING:
    from k2.stack.local import LocalStack

__all__ = ["clock_targets", "declared_services", "disk_targets", "health_probes", "process_targets", "proxy_targets"]


def declared_services(stack: LocalStack, run_id: str = "") -> list[ServiceTargets]:
    """Every running service of `stack` with its targets, in the order that says who serves what."""
    own, network, disks = process_targets(stack, run_id), proxy_targets(stack), disk_targets(stack)
    probes, clocks = health_probes(stack), clock_targets(stack)
    names = [*stack.state().services, *(d for d in clocks if d not in stack.state().services)]  # + client domains
    declared = []
    for name in names:
        found = (network.get(name), disks.get(name), own.get(name), clocks.get(name))
        targets: list[Target] = [t for t in found if t is not None]
        declared.append(ServiceTargets(name, *targets, probe=probes.get(name)))
    return declared


def clock_targets(stack: LocalStack) -> dict[str, ClockTarget]:
    """Each clock domain (the services' and the client domains' libfaketime offset files), each with the probe
    that reads its service's own clock where there is one (see k2.stack.clocks)."""
    found = clocks.clock_targets(stack)
    for name, probe in clocks.clock_probes(stack).items():
        if name in found:
            found[name].probe = probe
    return found


def process_targets(stack: LocalStack, run_id: str = "") -> dict[str, Target]:
    """One target per running service: its container on the docker backend, else its process tree."""
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
                **({"stop_timeout": patience} if (patience := stack.services[name].stop_patience) else {}),
                "state_file": str(statefile.state_path(stack.data_dir)),
                "service": name,
                "run_id": run_id,
            }
        )
        # In the runner, restarted by the stack object it already has: no `k2` interpreter to start and import
        # (1-3 s a restart on a loaded machine); the watchdog and `k2 chaos recover` run restart_argv.
        targets[name] = ProcessTarget(spec, restarter=functools.partial(stack.start_service, name))
    return targets


def proxy_targets(stack: LocalStack) -> dict[str, ProxyTarget]:
    """Each service as reached through the fault proxy, for network faults."""
    state = stack.state()
    api = f"http://{state.services[FAULT_PROXY].advertised}"
    return {name: ProxyTarget(name, api) for name in state.services if name != FAULT_PROXY}


def disk_targets(stack: LocalStack) -> dict[str, DiskTarget]:
    """The brokers' log filesystem (kafka-store's size-limited disk), reachable as `kafka-store` and as each
    broker (`kafka`, `kafka-2`, ...: they share it)."""
    store = stack.data_dir / "kafka-store" / "data"
    if not os.path.ismount(store):
        return {}
    names = ["kafka-store", *(name for name in stack.services if is_broker(name))]
    return {name: DiskTarget(name, str(store)) for name in names}


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
