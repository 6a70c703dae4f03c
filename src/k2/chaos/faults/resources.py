"""resource_limit: the seed's third mechanism — CPU and memory limits on a service's process tree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from k2.chaos.effects import Effect
from k2.chaos.faults.spec import FaultSpec
from k2.chaos.targets.base import LimitValues
from k2.chaos.targets.capabilities import CPU_PERIOD_US, Capability, Limits, Probe


@dataclass(frozen=True, kw_only=True, repr=False)
class ResourceLimit(FaultSpec[Limits]):
    """`cpu_quota` in µs per 100 ms period (50000 = half a core); `mem_limit` like "512m" or "1g".
    The previous limits come back on restore."""

    kind = "resource_limit"
    cpu_quota: int | None = 50000
    mem_limit: str | int | None = "512m"
    cpu_period: int = CPU_PERIOD_US

    def check(self) -> None:
        LimitValues.build(self.cpu_quota, self.mem_limit, cpu_period=self.cpu_period)

    @property
    def capability(self) -> Capability:
        return Capability.LIMITS

    @property
    def primitive(self) -> str:
        return "limit"

    def arguments(self) -> dict[str, Any]:
        return {"cpu_quota": self.cpu_quota, "mem_limit": self.mem_limit, "cpu_period": self.cpu_period}

    def apply(self, target: Limits, probe: Probe | None) -> Effect:
        return target.limit(self.cpu_quota, self.mem_limit, cpu_period=self.cpu_period)

    def undo(self, target: Limits, probe: Probe | None) -> Effect:
        return target.unlimit()
