"""disk_fill: the seed's disk pressure — the filesystem a service keeps its data on runs full."""

from __future__ import annotations

from typing import Any

from k2.chaos.errors import InvalidFault
from k2.chaos.faults.base import Fault
from k2.chaos.session import ChaosSession
from k2.chaos.targets import Target
from k2.chaos.units import parse_size


class DiskFill(Fault):
    """Fill the service's data filesystem to `fullness` (1.0 = no byte left) or by `size` bytes."""

    kind = "disk_fill"
    facet = "disk"

    def __init__(
        self,
        target: Target | str,
        duration_seconds: float | None = None,
        fullness: float | None = 1.0,
        size: str | int | None = None,
        *,
        session: ChaosSession | None = None,
    ) -> None:
        if size is not None:
            parse_size(size, what="size", minimum=1)
            fullness = None
        elif isinstance(fullness, bool) or not isinstance(fullness, int | float) or not 0 < fullness <= 1:
            raise InvalidFault(f"disk_fill: fullness={fullness!r} must be a fraction 0 < f <= 1 (1.0 = full)")
        self.fullness, self.size = fullness, size
        super().__init__(target, duration_seconds, session=session)

    @property
    def primitive(self) -> str:
        return "fill_disk"

    def params(self) -> dict[str, Any]:
        return {"size": self.size, "fullness": self.fullness}
