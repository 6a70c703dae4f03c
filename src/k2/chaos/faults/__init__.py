"""The seed's fault functions, with its call shapes; each returns a Fault to use with `with`.

with service_failure("kafka", duration_seconds=5, mode="pause"):
    producer.produce(...)
"""

from __future__ import annotations

from k2.chaos.faults.base import Fault, Terminated, validate_duration
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


__all__ = [
    "Fault",
    "ResourceLimit",
    "ServiceFailure",
    "Terminated",
    "resource_limit",
    "service_failure",
    "validate_duration",
]
