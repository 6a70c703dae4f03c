"""The stack's clocks: which services start armed with libfaketime (k2.chaos.faketime), their clock
targets and probes, and the clock domains of processes a scenario starts itself (writers, producers).

Every armed service follows `<data dir>/clock/<service>/offset` from its start; on the docker backend the
clock dir is bind-mounted into the container at the same path. Services K2 cannot arm get a target that
raises `Unsupported` saying why.
"""

from __future__ import annotations

import email.utils
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from k2.chaos import faketime
from k2.chaos.targets.clock import ClockProbe, ClockTarget
from k2.stack import procs
from k2.stack.state import ServiceState, StackState

if TYPE_CHECKING:
    from k2.stack.local import LocalStack

# PostgreSQL and K2's Python services: dynamically linked, so libfaketime reaches them.
ARMED = ("postgres", "schema-registry", "api")
# Domains for processes a scenario starts (the Iceberg writer, a producer, a reader) with `clock_env`.
CLIENT_DOMAINS = ("writer", "producer", "reader")
_STATIC = "is a static binary ({}), which never loads libfaketime (LD_PRELOAD); only ptrace-patching its vDSO "
_STATIC += "(Chaos Mesh's TimeChaos) could move its clock, and K2 does not do that: skew its clients instead"
UNSUPPORTED = {
    "kafka": _STATIC.format("tansu, static-pie Rust"),
    "kafka-store": _STATIC.format("weed, static Go"),
    "s3": _STATIC.format("weed, static Go"),
    "fault-proxy": "is K2's own fault machinery; its clock is not under test",
}


def clock_dir(data_dir: str | Path, domain: str) -> Path:
    return Path(data_dir) / "clock" / domain


def arm(stack: StackState, svc: ServiceState) -> None:
    """Before a start: the service's clock dir and the environment that makes it follow it."""
    if svc.name not in ARMED:
        return
    directory = clock_dir(stack.data_dir, svc.name)
    faketime.prepare(directory)
    svc.env.update(faketime.arm_env(directory))


def clock_env(stack: LocalStack, domain: str) -> dict[str, str]:
    """The environment for a process a scenario starts, to put it in clock domain `domain`."""
    if domain not in CLIENT_DOMAINS:
        raise ValueError(f"unknown clock domain {domain!r}; use one of {', '.join(CLIENT_DOMAINS)}")
    directory = clock_dir(stack.data_dir, domain)
    faketime.prepare(directory)
    return faketime.arm_env(directory)


def clock_targets(stack: LocalStack) -> dict[str, ClockTarget]:
    state = stack.state()
    targets: dict[str, ClockTarget] = {}
    for name in state.services:
        if name in ARMED:
            directory = clock_dir(state.data_dir, name)
            targets[name] = ClockTarget(name, str(directory), service_pid=_pid_of(stack, name))
        else:
            targets[name] = ClockTarget(name, None, unsupported=f"{name} " + UNSUPPORTED.get(name, "is not armed"))
    for domain in CLIENT_DOMAINS:  # ready before any process of the domain starts: a fault may come first
        directory = clock_dir(state.data_dir, domain)
        faketime.prepare(directory)
        targets[domain] = ClockTarget(domain, str(directory))
    return targets


def clock_probes(stack: LocalStack) -> dict[str, ClockProbe]:
    """Each armed service's own wall clock: PostgreSQL's clock_timestamp(), the Python services' Date header."""
    state = stack.state()
    probes: dict[str, ClockProbe] = {}
    if "postgres" in state.services:
        uri = stack.endpoints().postgres_uri

        def postgres(timeout: float) -> tuple[float, float]:
            import psycopg

            with psycopg.connect(uri, connect_timeout=max(1, int(timeout))) as conn:
                row = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
            assert row is not None
            return float(row[0]), 0.01

        probes["postgres"] = postgres
    for name, path in (("schema-registry", "/subjects"), ("api", "/health")):
        if name in state.services:
            probes[name] = _date_header(f"http://{state.services[name].advertised}{path}")
    return probes


def _date_header(url: str) -> ClockProbe:
    def probe(timeout: float) -> tuple[float, float]:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            date = response.headers["Date"]
        # whole seconds, and a server may render it up to a second before it answers
        return email.utils.parsedate_to_datetime(date).timestamp() + 0.5, 1.5

    return probe


def _pid_of(stack: LocalStack, name: str) -> Callable[[], int | None]:
    def pid() -> int | None:
        svc = stack.state().services.get(name)
        if svc is None:
            return None
        if svc.container is not None:  # the container's main process, as the host sees it
            return stack.container_pid(svc) if hasattr(stack, "container_pid") else None
        return svc.process.pid if svc.process is not None and procs.is_alive(svc.process) else None

    return pid


__all__ = ["ARMED", "CLIENT_DOMAINS", "arm", "clock_dir", "clock_env", "clock_probes", "clock_targets"]
