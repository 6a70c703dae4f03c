"""clock_skew: the seed's clock chaos — a service's wall clock jumps (NTP step, a wrong clock, DST).

    with clock_skew("postgres", offset_seconds=1800):                  # 30 min ahead, until the block exits
    with clock_skew("writer", jump_to="2026-10-25T00:59:50+00:00"):    # an absolute time, then it runs on

The jump happens at injection; restoring is the step back to the true time. A DST transition is a
local-time rendering: run the process with TZ set and jump its clock to just before the switch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from k2.chaos.effects import Effect
from k2.chaos.errors import InvalidFault
from k2.chaos.faketime import MAX_OFFSET_S
from k2.chaos.faults.spec import FaultSpec
from k2.chaos.targets.capabilities import Capability, Clock, Probe

# Declared for tools that draw faults from the catalogue (seeded exploration): the range a fault may take.
OFFSET_RANGE_S = (-MAX_OFFSET_S, MAX_OFFSET_S)


@dataclass(frozen=True, kw_only=True, repr=False)
class ClockSkew(FaultSpec[Clock]):
    """Shift the target's wall clock by `offset_seconds`, or set it to `jump_to` (it then runs on)."""

    kind = "clock_skew"
    offset_seconds: float | None = None
    jump_to: datetime | str | None = None

    def check(self) -> None:
        if (self.offset_seconds is None) == (self.jump_to is None):
            raise InvalidFault("clock_skew: give exactly one of offset_seconds (e.g. 1800) or jump_to (a time)")
        if self.offset_seconds is not None:
            offset = self.offset_seconds
            if isinstance(offset, bool) or not isinstance(offset, int | float):
                raise InvalidFault(f"clock_skew: offset_seconds={offset!r} must be a number of seconds")
            if not math.isfinite(offset) or not OFFSET_RANGE_S[0] <= offset <= OFFSET_RANGE_S[1]:
                raise InvalidFault(f"clock_skew: offset_seconds={offset} is beyond 20 years; give less")
            self._set("offset_seconds", float(offset))
        if self.jump_to is not None:
            jump = _aware(self.jump_to)
            if abs(jump.timestamp() - time.time()) > OFFSET_RANGE_S[1]:
                raise InvalidFault(f"clock_skew: jump_to={jump.isoformat()} is more than 20 years away")
            self._set("jump_to", jump.isoformat())  # plain data, so the spec is JSON and replays

    @property
    def capability(self) -> Capability:
        return Capability.CLOCK

    @property
    def primitive(self) -> str:
        return "skew_clock"

    def offset_now(self) -> float:
        """The offset to apply now: a jump_to becomes the distance to it at injection."""
        if self.jump_to is not None:
            return round(_aware(self.jump_to).timestamp() - time.time(), 6)
        assert self.offset_seconds is not None
        return self.offset_seconds

    def arguments(self) -> dict[str, Any]:
        """The offset, computed at injection for a jump_to (the journal records what was applied)."""
        return {"offset_seconds": self.offset_now()}

    def apply(self, target: Clock, probe: Probe | None) -> Effect:
        return target.skew_clock(self.offset_now())

    def undo(self, target: Clock, probe: Probe | None) -> Effect:
        return target.unskew()


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidFault(f"clock_skew: jump_to={value!r} is not an ISO-8601 time") from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidFault(f"clock_skew: jump_to={value!r} needs a time zone (e.g. 2026-10-25T00:59:50+00:00)")
    return value
