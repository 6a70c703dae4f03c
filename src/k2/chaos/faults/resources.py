"""resource_limit: the seed's third mechanism — CPU and memory limits on a service's process tree."""

from __future__ import annotations

from typing import Any

from k2.chaos.faults.base import Fault
from k2.chaos.session import ChaosSession
from k2.chaos.targets import CPU_PERIOD_US, Limits, Target


class ResourceLimit(Fault):
    """`cpu_quota` in µs per 100 ms period (50000 = half a core); `mem_limit` like "512m" or "1g".
    The previous limits come back on restore."""

    kind = "resource_limit"

    def __init__(
        self,
        target: Target | str,
        cpu_quota: int | None = 50000,
        mem_limit: str | int | None = "512m",
        *,
        duration_seconds: float | None = None,
        cpu_period: int = CPU_PERIOD_US,
        session: ChaosSession | None = None,
    ) -> None:
        self.limits = Limits.build(cpu_quota, mem_limit, cpu_period=cpu_period)
        self.cpu_quota, self.mem_limit, self.cpu_period = cpu_quota, mem_limit, cpu_period
        super().__init__(target, duration_seconds, session=session)

    @property
    def primitive(self) -> str:
        return "limit"

    def params(self) -> dict[str, Any]:
        return {"cpu_quota": self.cpu_quota, "mem_limit": self.mem_limit, "cpu_period": self.cpu_period}
