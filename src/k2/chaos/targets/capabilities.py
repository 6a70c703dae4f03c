"""What a backend can do to a service, as small protocols: one per capability, each primitive with its inverse.

A target class says which capabilities it has (`capabilities`); a session declares, per service, which
target provides each one; a fault asks for the one it needs and gets a typed `Unsupported` naming the
route that would work when no declared target has it. Every inject primitive verifies its effect from
outside before returning (and undoes itself and raises `InjectionFailed` when the effect did not take);
every inverse is idempotent, takes no required argument (the journal calls it from a description alone)
and verifies the service is back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from k2.chaos.effects import (
    Filled,
    Freed,
    Frozen,
    Healed,
    Limited,
    Partitioned,
    Shaped,
    Skewed,
    Started,
    Stopped,
    Thawed,
    Unlimited,
    Unskewed,
)

__all__ = [
    "CPU_PERIOD_US",
    "INVERSES",
    "PRIMITIVES",
    "PROTOCOLS",
    "ROUTES",
    "Capability",
    "Clock",
    "Disk",
    "Freeze",
    "Lifecycle",
    "Limits",
    "Network",
    "Probe",
]

# The seed's unit: cpu_quota is microseconds of CPU per 100 ms period (50000 = half a core).
CPU_PERIOD_US = 100_000

Probe = Callable[[float], bool]
"""`probe(timeout_s)` returns True if the service answered within `timeout_s` (e.g. a real request)."""


class Capability(StrEnum):
    LIFECYCLE = "lifecycle"
    FREEZE = "freeze"
    LIMITS = "limits"
    NETWORK = "network"
    DISK = "disk"
    CLOCK = "clock"


@runtime_checkable
class Lifecycle(Protocol):
    """stop / kill, inverse start. Verified: every process (or the container) gone; start: running and,
    with a probe, answering again (a container runs well before the service in it listens)."""

    def stop(self, timeout: float | None = None) -> Stopped: ...
    def kill(self, timeout: float | None = None) -> Stopped: ...
    def start(self, timeout: float | None = None, probe: Probe | None = None) -> Started: ...


@runtime_checkable
class Freeze(Protocol):
    """pause, inverse resume. Verified: the freezer reads FROZEN and the probe gets no answer; resume:
    thawed and, with a probe, answering."""

    def pause(self, timeout: float = 10.0, probe: Probe | None = None) -> Frozen: ...
    def resume(self, timeout: float = 10.0, probe: Probe | None = None) -> Thawed: ...


@runtime_checkable
class Limits(Protocol):
    """limit cpu (µs per period) and/or memory, inverse unlimit. Verified: the limits read back from the
    kernel or engine; unlimit: the previous limits read back, with what the limits did while held."""

    def limit(
        self, cpu_quota: int | None = None, mem_limit: str | int | None = None, *, cpu_period: int = CPU_PERIOD_US
    ) -> Limited: ...
    def unlimit(self, timeout: float = 10.0) -> Unlimited: ...


@runtime_checkable
class Network(Protocol):
    """isolate (partition) and shape (latency, bandwidth, ... on a stream), inverse rejoin / unshape.
    Verified: a new connection or the probe fails (partition), the probe's round trip with the shaping;
    rejoin/unshape: nothing of K2's left in place."""

    def isolate(
        self,
        mode: str = "refuse",
        direction: str = "both",
        clients: Sequence[str] | None = None,
        probe: Probe | None = None,
    ) -> Partitioned: ...
    def rejoin(self) -> Healed: ...
    def shape(
        self,
        toxic: str,
        stream: str = "downstream",
        toxicity: float = 1.0,
        attributes: Mapping[str, Any] | None = None,
        clients: Sequence[str] | None = None,
        probe: Probe | None = None,
    ) -> Shaped: ...
    def unshape(self) -> Healed: ...


@runtime_checkable
class Disk(Protocol):
    """fill_disk to a size or a fullness, inverse free_disk. Verified with df before and after."""

    def fill_disk(self, size: str | int | None = None, fullness: float | None = None) -> Filled: ...
    def free_disk(self) -> Freed: ...


@runtime_checkable
class Clock(Protocol):
    """skew_clock by `offset_seconds`, inverse unskew. Verified: the service's clock read from outside.
    Declared here so the clock_skew fault (issue #14) is one spec and one backend method away."""

    def skew_clock(self, offset_seconds: float) -> Skewed: ...
    def unskew(self) -> Unskewed: ...


PROTOCOLS: dict[Capability, type] = {
    Capability.LIFECYCLE: Lifecycle,
    Capability.FREEZE: Freeze,
    Capability.LIMITS: Limits,
    Capability.NETWORK: Network,
    Capability.DISK: Disk,
    Capability.CLOCK: Clock,
}

# capability -> {inject primitive: its inverse}. The journal calls the inverse with no arguments.
PRIMITIVES: dict[Capability, dict[str, str]] = {
    Capability.LIFECYCLE: {"stop": "start", "kill": "start"},
    Capability.FREEZE: {"pause": "resume"},
    Capability.LIMITS: {"limit": "unlimit"},
    Capability.NETWORK: {"isolate": "rejoin", "shape": "unshape"},
    Capability.DISK: {"fill_disk": "free_disk"},
    Capability.CLOCK: {"skew_clock": "unskew"},
}
INVERSES: dict[str, str] = {p: inv for table in PRIMITIVES.values() for p, inv in table.items()}

# What would make a capability available to a service that has none (the message of `Unsupported`).
ROUTES: dict[Capability, str] = {
    Capability.LIFECYCLE: "declare the service's process or container target in the session (the stack's own "
    "services get one from k2.testing)",
    Capability.FREEZE: "declare the service's process or container target in the session (a local process "
    "needs no privilege: a cgroup freezer where one is writable, else SIGSTOP; a container needs a Docker engine)",
    Capability.LIMITS: "declare the service's process or container target in the session (a local process "
    "needs no privilege: cgroup limits where writable, else a duty-cycled CPU cap and rlimits)",
    Capability.NETWORK: "route the service through the stack's fault-proxy (declare its ProxyTarget in the "
    "session, as k2.testing does for every stack service): partitions and toxics need no privilege there",
    Capability.DISK: "give the service a filesystem of its own (a size-limited mount, as the stack gives "
    "kafka-store, or a container volume) and declare a DiskTarget for it",
    Capability.CLOCK: "no backend skews clocks yet (issue #14: libfaketime for dynamically linked services)",
}
