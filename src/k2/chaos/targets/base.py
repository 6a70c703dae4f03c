"""The `Target` protocol every backend implements, and the values its primitives share.

A target is one service of the declared stack (a local process tree, a container, a fault proxy's view
of it, its data filesystem). What it can do is in `capabilities` (see `k2.chaos.targets.capabilities`);
each primitive has an inverse, and every inverse is idempotent and takes no required arguments, so the
journal can undo a fault from a `describe()` dict alone, in another process, after a crash.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from k2.chaos.errors import InvalidFault
from k2.chaos.targets.capabilities import CPU_PERIOD_US, Capability, Probe
from k2.chaos.units import format_size, parse_size

__all__ = [
    "CPU_PERIOD_US",
    "MIN_MEM_LIMIT",
    "LimitValues",
    "Probe",
    "Target",
    "probe_rtt_ms",
    "wait_until",
]

# The kernel refuses periods and quotas below 1 ms and periods above 1 s.
_MIN_QUOTA_US = 1_000
_MAX_PERIOD_US = 1_000_000
# Below this a process cannot even start; such a limit tests nothing but the kernel.
MIN_MEM_LIMIT = 1 << 20


@dataclass(frozen=True)
class LimitValues:
    """Validated resource limits; build with `LimitValues.build` so bad values never reach a cgroup."""

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
    ) -> LimitValues:
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
    """One service's handle on one backend. Inject primitives raise `InjectionFailed` when the effect did
    not take (after undoing what they did); inverses raise `RestoreFailed`; a backend that cannot do a
    primitive here raises `Unsupported` saying why and what would make it work. `capabilities` says which
    of the protocols in `k2.chaos.targets.capabilities` the class implements."""

    kind: str
    name: str
    capabilities: ClassVar[frozenset[Capability]]

    def describe(self) -> dict[str, Any]:
        """JSON-able state from which `k2.chaos.targets.target_from_description` rebuilds this target."""
        ...
