"""disk_fill: the seed's disk pressure — the filesystem a service keeps its data on runs full."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from k2.chaos.effects import Effect
from k2.chaos.errors import InvalidFault
from k2.chaos.faults.spec import FaultSpec
from k2.chaos.targets.capabilities import Capability, Disk, Probe
from k2.chaos.units import parse_size


@dataclass(frozen=True, kw_only=True, repr=False)
class DiskFill(FaultSpec[Disk]):
    """Fill the service's data filesystem to `fullness` (1.0 = no byte left) or by `size` bytes."""

    kind = "disk_fill"
    fullness: float | None = 1.0
    size: str | int | None = None

    def check(self) -> None:
        if self.size is not None:
            parse_size(self.size, what="size", minimum=1)
            self._set("fullness", None)
        elif (
            isinstance(self.fullness, bool) or not isinstance(self.fullness, int | float) or not 0 < self.fullness <= 1
        ):
            raise InvalidFault(f"disk_fill: fullness={self.fullness!r} must be a fraction 0 < f <= 1 (1.0 = full)")

    @property
    def capability(self) -> Capability:
        return Capability.DISK

    @property
    def primitive(self) -> str:
        return "fill_disk"

    def arguments(self) -> dict[str, Any]:
        return {"size": self.size, "fullness": self.fullness}

    def apply(self, target: Disk, probe: Probe | None) -> Effect:
        return target.fill_disk(size=self.size, fullness=self.fullness)

    def undo(self, target: Disk, probe: Probe | None) -> Effect:
        return target.free_disk()
