"""clock_skew: the seed's clock chaos — a service's wall clock jumps (NTP step, a wrong clock, DST).

    with clock_skew("postgres", offset_seconds=1800):                  # 30 min ahead, until the block exits
    with clock_skew("writer", jump_to="2026-10-25T00:59:50+00:00"):    # an absolute time, then it runs on

The jump happens at injection; restoring is the step back to the true time. A DST transition is a
local-time rendering: run the process with TZ set and jump its clock to just before the switch.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

from k2.chaos.errors import InvalidFault
from k2.chaos.faketime import MAX_OFFSET_S
from k2.chaos.faults.base import Fault
from k2.chaos.session import ChaosSession
from k2.chaos.targets import Target

# Declared for tools that draw faults from the catalogue (seeded exploration): the range a fault may take.
OFFSET_RANGE_S = (-MAX_OFFSET_S, MAX_OFFSET_S)


class ClockSkew(Fault):
    """Shift the target's wall clock by `offset_seconds`, or set it to `jump_to` (it then runs on)."""

    kind = "clock_skew"
    facet = "clock"

    def __init__(
        self,
        target: Target | str,
        offset_seconds: float | None = None,
        jump_to: datetime | str | None = None,
        duration_seconds: float | None = None,
        *,
        session: ChaosSession | None = None,
    ) -> None:
        if (offset_seconds is None) == (jump_to is None):
            raise InvalidFault("clock_skew: give exactly one of offset_seconds (e.g. 1800) or jump_to (a time)")
        if offset_seconds is not None:
            if isinstance(offset_seconds, bool) or not isinstance(offset_seconds, int | float):
                raise InvalidFault(f"clock_skew: offset_seconds={offset_seconds!r} must be a number of seconds")
            if not math.isfinite(offset_seconds) or not OFFSET_RANGE_S[0] <= offset_seconds <= OFFSET_RANGE_S[1]:
                raise InvalidFault(f"clock_skew: offset_seconds={offset_seconds} is beyond 20 years; give less")
        self.offset_seconds = None if offset_seconds is None else float(offset_seconds)
        self.jump_to = None if jump_to is None else _aware(jump_to)
        if self.jump_to is not None and abs(self.jump_to.timestamp() - time.time()) > OFFSET_RANGE_S[1]:
            raise InvalidFault(f"clock_skew: jump_to={self.jump_to.isoformat()} is more than 20 years away")
        super().__init__(target, duration_seconds, session=session)

    @property
    def primitive(self) -> str:
        return "skew_clock"

    def params(self) -> dict[str, Any]:
        """The offset, computed at injection for a jump_to (the journal records what was applied)."""
        if self.jump_to is not None:
            return {"offset_seconds": round(self.jump_to.timestamp() - time.time(), 6)}
        return {"offset_seconds": self.offset_seconds}

    def options(self, session: ChaosSession, target: Target) -> dict[str, Any]:
        probe = session.clock_probes.get(target.name)
        return {"probe": probe} if probe else {}

    def restore_options(self, session: ChaosSession, target: Target) -> dict[str, Any]:
        return self.options(session, target)

    def __repr__(self) -> str:
        what = f"jump_to={self.jump_to.isoformat()}" if self.jump_to else f"offset_seconds={self.offset_seconds:+g}"
        return f"clock_skew({self._target_name()!r}, {what}, duration={self.duration})"


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidFault(f"clock_skew: jump_to={value!r} is not an ISO-8601 time") from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidFault(f"clock_skew: jump_to={value!r} needs a time zone (e.g. 2026-10-25T00:59:50+00:00)")
    return value
