"""The seed's fault functions, with its call shapes; each returns a Fault to use with `with`.

with service_failure("kafka", duration_seconds=5, mode="pause"):
    producer.produce(...)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from k2.chaos.faults.base import Fault, Terminated, validate_duration
from k2.chaos.faults.clock import ClockSkew
from k2.chaos.faults.disk import DiskFill
from k2.chaos.faults.network import (
    Bandwidth,
    ConnectionReset,
    DataLimit,
    Latency,
    NetworkPartition,
    Slicer,
    SlowClose,
    Timeout,
)
from k2.chaos.faults.resources import ResourceLimit
from k2.chaos.faults.service import ServiceFailure
from k2.chaos.session import ChaosSession
from k2.chaos.targets import Target


def service_failure(
    target: Target | str, duration_seconds: float | None = 5, mode: str = "stop", *, session: ChaosSession | None = None
) -> ServiceFailure:
    return ServiceFailure(target, duration_seconds, mode, session=session)


def resource_limit(
    target: Target | str,
    cpu_quota: int | None = 50000,
    mem_limit: str | int | None = "512m",
    *,
    duration_seconds: float | None = None,
    session: ChaosSession | None = None,
) -> ResourceLimit:
    return ResourceLimit(target, cpu_quota, mem_limit, duration_seconds=duration_seconds, session=session)


def network_partition(
    target: Target | str,
    duration_seconds: float | None = 10,
    mode: str = "refuse",
    direction: str = "both",
    clients: list[str] | None = None,
    *,
    session: ChaosSession | None = None,
) -> NetworkPartition:
    return NetworkPartition(target, duration_seconds, mode, direction, clients, session=session)


def inject_latency(
    target: Target | str,
    latency_ms: int = 200,
    jitter_ms: int = 50,
    *,
    duration_seconds: float | None = None,
    stream: str = "downstream",
    **options: Any,
) -> Latency:
    return Latency(target, duration_seconds, stream=stream, latency=latency_ms, jitter=jitter_ms, **options)


def limit_bandwidth(target: Target | str, rate_kbps: int, **options: Any) -> Bandwidth:
    return Bandwidth(target, rate=rate_kbps, **options)


def reset_connections(target: Target | str, timeout_ms: int = 0, **options: Any) -> ConnectionReset:
    return ConnectionReset(target, timeout=timeout_ms, **options)


def timeout_connections(target: Target | str, timeout_ms: int = 0, **options: Any) -> Timeout:
    return Timeout(target, timeout=timeout_ms, **options)


def slow_close(target: Target | str, delay_ms: int, **options: Any) -> SlowClose:
    return SlowClose(target, delay=delay_ms, **options)


def slice_stream(
    target: Target | str, average_size: int, size_variation: int = 0, delay_us: int = 0, **options: Any
) -> Slicer:
    return Slicer(target, average_size=average_size, size_variation=size_variation, delay=delay_us, **options)


def limit_data(target: Target | str, max_bytes: int, **options: Any) -> DataLimit:
    return DataLimit(target, bytes=max_bytes, **options)


def disk_fill(
    target: Target | str,
    duration_seconds: float | None = None,
    fullness: float | None = 1.0,
    size: str | int | None = None,
    *,
    session: ChaosSession | None = None,
) -> DiskFill:
    return DiskFill(target, duration_seconds, fullness, size, session=session)


def clock_skew(
    target: Target | str,
    offset_seconds: float | None = None,
    jump_to: datetime | str | None = None,
    *,
    duration_seconds: float | None = None,
    session: ChaosSession | None = None,
) -> ClockSkew:
    return ClockSkew(target, offset_seconds, jump_to, duration_seconds, session=session)


__all__ = [
    "ClockSkew",
    "DiskFill",
    "Fault",
    "ResourceLimit",
    "ServiceFailure",
    "Terminated",
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
