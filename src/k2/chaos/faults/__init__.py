"""The seed's fault functions, with its call shapes; each returns a `Fault` to use with `with`.

with service_failure("kafka", duration_seconds=5, mode="pause") as fault:
    producer.produce(...)
fault.effect            # what was measured (typed: here `Frozen`), fault.restore_effect after the block

Each builds a frozen, validated `FaultSpec` (`fault.spec`) and binds it to a session; `session.inject(spec)`
does the same without the seed's shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from k2.chaos.faults.clock import ClockSkew
from k2.chaos.faults.context import Injector
from k2.chaos.faults.disk import DiskFill
from k2.chaos.faults.fault import Fault
from k2.chaos.faults.injection import FaultRecord, Injection, Terminated
from k2.chaos.faults.network import (
    Bandwidth,
    ConnectionReset,
    DataLimit,
    Latency,
    NetworkPartition,
    Slicer,
    SlowClose,
    Timeout,
    ToxicFault,
)
from k2.chaos.faults.resources import ResourceLimit
from k2.chaos.faults.service import ServiceFailure
from k2.chaos.faults.spec import FaultSpec, validate_duration
from k2.chaos.targets.base import Target
from k2.chaos.targets.capabilities import CPU_PERIOD_US

__all__ = [
    "ClockSkew",
    "DiskFill",
    "Fault",
    "FaultRecord",
    "FaultSpec",
    "Injection",
    "NetworkPartition",
    "ResourceLimit",
    "ServiceFailure",
    "Terminated",
    "ToxicFault",
    "clock_skew",
    "disk_fill",
    "inject_latency",
    "limit_bandwidth",
    "limit_data",
    "network_partition",
    "reset_connections",
    "resource_limit",
    "service_failure",
    "slice_stream",
    "slow_close",
    "timeout_connections",
    "validate_duration",
]


def _bind(spec: FaultSpec[Any], target: Target | str, session: Injector | None) -> Fault:
    return Fault(spec, session=session, target=None if isinstance(target, str) else target)


def _name(target: Target | str) -> str:
    if isinstance(target, str):
        return target
    name = getattr(target, "name", None)
    if not isinstance(name, str) or not hasattr(target, "describe"):
        from k2.chaos.errors import InvalidFault

        raise InvalidFault(f"target {target!r} is neither a service name nor a chaos target")
    return name


def service_failure(
    target: Target | str, duration_seconds: float | None = 5, mode: str = "stop", *, session: Injector | None = None
) -> Fault:
    spec = ServiceFailure(target=_name(target), duration_s=duration_seconds, mode=mode)
    return _bind(spec, target, session)


def resource_limit(
    target: Target | str,
    cpu_quota: int | None = 50000,
    mem_limit: str | int | None = "512m",
    *,
    duration_seconds: float | None = None,
    cpu_period: int = CPU_PERIOD_US,
    session: Injector | None = None,
) -> Fault:
    spec = ResourceLimit(target=_name(target), duration_s=duration_seconds, cpu_quota=cpu_quota, mem_limit=mem_limit,
                         cpu_period=cpu_period)  # fmt: skip
    return _bind(spec, target, session)


def network_partition(
    target: Target | str,
    duration_seconds: float | None = 10,
    mode: str = "refuse",
    direction: str = "both",
    clients: Sequence[str] | None = None,
    *,
    session: Injector | None = None,
) -> Fault:
    listed = tuple(clients) if isinstance(clients, list | tuple) else clients
    spec = NetworkPartition(target=_name(target), duration_s=duration_seconds, mode=mode, direction=direction,
                            clients=listed)  # type: ignore[arg-type]  # fmt: skip
    return _bind(spec, target, session)


def _toxic(
    cls: type[ToxicFault],
    target: Target | str,
    attributes: dict[str, Any],
    *,
    duration_seconds: float | None = None,
    stream: str = "downstream",
    toxicity: float = 1.0,
    clients: Sequence[str] | None = None,
    session: Injector | None = None,
) -> Fault:
    listed = tuple(clients) if isinstance(clients, list | tuple) else clients
    spec = cls(target=_name(target), duration_s=duration_seconds, stream=stream, toxicity=toxicity,
               clients=listed, attributes=attributes)  # type: ignore[arg-type]  # fmt: skip
    return _bind(spec, target, session)


def inject_latency(target: Target | str, latency_ms: int = 200, jitter_ms: int = 50, **options: Any) -> Fault:
    return _toxic(Latency, target, {"latency": latency_ms, "jitter": jitter_ms}, **options)


def limit_bandwidth(target: Target | str, rate_kbps: int, **options: Any) -> Fault:
    return _toxic(Bandwidth, target, {"rate": rate_kbps}, **options)


def reset_connections(target: Target | str, timeout_ms: int = 0, **options: Any) -> Fault:
    return _toxic(ConnectionReset, target, {"timeout": timeout_ms}, **options)


def timeout_connections(target: Target | str, timeout_ms: int = 0, **options: Any) -> Fault:
    return _toxic(Timeout, target, {"timeout": timeout_ms}, **options)


def slow_close(target: Target | str, delay_ms: int, **options: Any) -> Fault:
    return _toxic(SlowClose, target, {"delay": delay_ms}, **options)


def slice_stream(
    target: Target | str, average_size: int, size_variation: int = 0, delay_us: int = 0, **options: Any
) -> Fault:
    attributes = {"average_size": average_size, "size_variation": size_variation, "delay": delay_us}
    return _toxic(Slicer, target, attributes, **options)


def limit_data(target: Target | str, max_bytes: int, **options: Any) -> Fault:
    return _toxic(DataLimit, target, {"bytes": max_bytes}, **options)


def disk_fill(
    target: Target | str,
    duration_seconds: float | None = None,
    fullness: float | None = 1.0,
    size: str | int | None = None,
    *,
    session: Injector | None = None,
) -> Fault:
    spec = DiskFill(target=_name(target), duration_s=duration_seconds, fullness=fullness, size=size)
    return _bind(spec, target, session)


def clock_skew(
    target: Target | str,
    offset_seconds: float | None = None,
    jump_to: datetime | str | None = None,
    *,
    duration_seconds: float | None = None,
    session: Injector | None = None,
) -> Fault:
    spec = ClockSkew(target=_name(target), duration_s=duration_seconds, offset_seconds=offset_seconds, jump_to=jump_to)
    return _bind(spec, target, session)
