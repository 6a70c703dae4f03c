"""The `Target` protocol every backend implements, and the values its primitives share.

A target is one service of the declared stack (a local process tree, a container, a pod). Each
primitive has an inverse; every inverse is idempotent and takes no required arguments, so the
journal can undo a fault from a `describe()` dict alone, in another process, after a crash.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from k2.chaos.errors import InvalidFault
from k2.chaos.units import format_size, parse_size

__all__ = [
    "CPU_PERIOD_US",
    "INVERSES",
    "MIN_MEM_LIMIT",
    "Effect",
    "Limits",
    "Probe",
    "Target",
    "wait_until",
]

# The seed's unit: cpu_quota is microseconds of CPU per 100 ms period (50000 = half a core).
CPU_PERIOD_US = 100_000
# The kernel refuses periods and quotas below 1 ms and periods above 1 s.
_MIN_QUOTA_US = 1_000
_MAX_PERIOD_US = 1_000_000
# Below this a process cannot even start; such a limit tests nothing but the kernel.
MIN_MEM_LIMIT = 1 << 20

# primitive -> its inverse. The journal calls the inverse with no arguments to undo a fault.
INVERSES: dict[str, str] = {
    "stop": "start",
    "kill": "start",
    "pause": "resume",
    "limit": "unlimit",
    "isolate": "rejoin",
    "shape": "unshape",
    "fill_disk": "free_disk",
    "skew_clock": "unskew",
}

Probe = Callable[[float], bool]
"""`probe(timeout_s)` returns True if the service answered within `timeout_s` (e.g. a TCP connect)."""


@dataclass
class Effect:
    """What a primitive measured: enough to tell a fault that took from one that silently did not."""

    primitive: str
    target: str
    started_at: float  # wall clock, seconds since the epoch
    duration_s: float  # time the primitive took, monotonic
    measured: dict[str, Any] = field(default_factory=dict)
    changed: bool = True  # False when the call found nothing to do (an idempotent inverse)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Limits:
    """Validated resource limits; build with `Limits.build` so bad values never reach a cgroup."""

    cpu_quota_us: int | None
    cpu_period_us: int
    mem_bytes: int | None

    @classmethod
    def build(
        cls,
        cpu_quota: object = None,
        mem_limit: object = None,
        *,
        cpu_period: object = CPU_PERIOD_US,
        cores: int | None = None,
        mem_total: int | None = None,
    ) -> Limits:
        """Validate the seed's parameters: `cpu_quota` in µs per `cpu_period` µs, `mem_limit` like "512m".

        `cores` bounds the quota (more than period x cores cannot be used); `mem_total` bounds the
        memory limit (a limit above the machine's memory has no effect, so it is refused).
        """
        if cpu_quota is None and mem_limit is None:
            raise InvalidFault("resource limit: give cpu_quota (µs per 100 ms), mem_limit (e.g. '512m'), or both")
        period = _as_int(cpu_period, "cpu_period")
        if not _MIN_QUOTA_US <= period <= _MAX_PERIOD_US:
            raise InvalidFault(f"cpu_period={period} µs is outside 1000..1000000 µs: use the default 100000")
        quota: int | None = None
        if cpu_quota is not None:
            quota = _as_int(cpu_quota, "cpu_quota")
            ncores = cores or os.cpu_count() or 1
            if quota < _MIN_QUOTA_US:
                raise InvalidFault(
                    f"cpu_quota={quota} µs is below the kernel's minimum of 1000 µs per period: "
                    "give e.g. 20000 for 20% of a core"
                )
            if quota > period * ncores:
                raise InvalidFault(
                    f"cpu_quota={quota} µs exceeds {period} µs x {ncores} cores = {period * ncores} µs, "
                    "so it would limit nothing: give at most that"
                )
        mem: int | None = None
        if mem_limit is not None:
            mem = parse_size(mem_limit, what="mem_limit", minimum=MIN_MEM_LIMIT)
            if mem_total is not None and mem > mem_total:
                raise InvalidFault(
                    f"mem_limit={mem_limit!r} is more than this machine's {format_size(mem_total)} of memory, "
                    "so it would limit nothing: give a smaller size"
                )
        return cls(cpu_quota_us=quota, cpu_period_us=period, mem_bytes=mem)


def _as_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidFault(f"{what}={value!r}: expected a whole number of microseconds")
    if value < 0:
        raise InvalidFault(f"{what}={value} is negative: give a positive number of microseconds")
    return value


def wait_until(condition: Callable[[], bool], timeout: float, *, first: float = 0.001, cap: float = 0.02) -> bool:
    """Poll `condition` with a growing interval until it holds or `timeout` s pass; return whether it held.

    Kernel state changes (a freezer settling, a process exiting) land in microseconds to
    milliseconds, so polling starts at 1 ms and backs off to `cap`.
    """
    deadline = time.monotonic() + timeout
    interval = first
    while True:
        if condition():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, cap)


def probe_rtt_ms(probe: Probe | None, timeout: float = 10.0) -> float | None:
    """The probe's round trip in ms, or None when it got no answer (or there is no probe)."""
    if probe is None:
        return None
    started = time.perf_counter()
    return round((time.perf_counter() - started) * 1000, 1) if probe(timeout) else None


@runtime_checkable
class Target(Protocol):
    """One service's handle. Inject primitives raise `InjectionFailed` when the effect did not take
    (after undoing what they did); inverses raise `RestoreFailed`; a backend that cannot do a
    primitive raises `Unsupported` saying why and what would make it work."""

    kind: str
    name: str

    def describe(self) -> dict[str, Any]:
        """JSON-able state from which `k2.chaos.targets.target_from_description` rebuilds this target."""
        ...

    def stop(self, timeout: float | None = None) -> Effect:
        """Stop gracefully (the service's stop signal, then SIGKILL after `timeout`). Inverse: start."""
        ...

    def kill(self, timeout: float | None = None) -> Effect:
        """SIGKILL the whole service at once. Inverse: start."""
        ...

    def start(self, timeout: float | None = None, probe: Probe | None = None) -> Effect:
        """Start the service with its data and wait until it is healthy (and `probe` answers); no-op if it runs."""
        ...

    def pause(self, timeout: float = 10.0, probe: Probe | None = None) -> Effect:
        """Freeze every process of the service. Inverse: resume."""
        ...

    def resume(self, timeout: float = 10.0, probe: Probe | None = None) -> Effect:
        """Thaw the service; no-op if it is not paused."""
        ...

    def limit(
        self, cpu_quota: int | None = None, mem_limit: str | int | None = None, *, cpu_period: int = CPU_PERIOD_US
    ) -> Effect:
        """Constrain CPU (µs per period) and/or memory. Inverse: unlimit."""
        ...

    def unlimit(self, timeout: float = 10.0) -> Effect:
        """Remove the limits and restore the previous ones; no-op if none are applied."""
        ...
