"""A clock domain as a chaos target: the processes armed with one offset file (see k2.chaos.faketime).

`skew_clock(offset_seconds)` writes the offset and proves it took: an armed reader sees the new time,
the service's own process follows the domain's file (/proc maps), and, when a probe is given, the
service itself reports the shifted time (PostgreSQL's clock_timestamp(), an HTTP Date header).
`unskew()` writes "+0" and proves the same; it needs nothing but the description,
so the journal and the watchdog restore a clock like any other fault.

A client domain (the processes a scenario starts with the stack's `clock_env`, before or after the
fault) needs no live process: an armed reader seeing the new time is the proof. A domain K2 cannot arm
(a static binary: tansu, weed) is a target too, whose primitives raise `Unsupported` naming why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from k2.chaos import faketime
from k2.chaos.effects import Skewed, Unskewed, measure
from k2.chaos.errors import InjectionFailed, InvalidFault, RestoreFailed, Unsupported
from k2.chaos.targets.capabilities import Capability

__all__ = ["ClockProbe", "ClockTarget"]

ClockProbe = Callable[[float], tuple[float, float]]
"""`probe(timeout_s)` -> (the service's own wall clock as epoch seconds, its resolution in seconds)."""

SETTLE_TIMEOUT_S = 5.0
TOLERANCE_S = 0.5  # on top of the probe's resolution


class ClockTarget:
    kind = "clock"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.CLOCK})
    limitations: ClassVar[dict[str, str]] = {
        "clock_skew": "processes armed with libfaketime at start (not static binaries: tansu, weed)"
    }

    def __init__(
        self, name: str, clock_dir: str | None, *, service_pid: Callable[[], int | None] | None = None,
        unsupported: str | None = None, probe: ClockProbe | None = None,
    ) -> None:  # fmt: skip
        """`service_pid()`: the pid of the service whose clock this is, now (None: any armed process counts);
        `probe`: reads the service's own clock, used when a primitive is given none."""
        if clock_dir is None and unsupported is None:
            raise InvalidFault(f"clock target {name}: give its clock dir, or why it has none")
        self.name, self.clock_dir, self.unsupported = name, clock_dir, unsupported
        self._service_pid = service_pid
        self.probe = probe

    @classmethod
    def from_description(cls, desc: Mapping[str, Any]) -> ClockTarget:
        if desc.get("kind") != cls.kind:
            raise InvalidFault(f"not a clock target description: kind={desc.get('kind')!r}")
        return cls(desc["name"], desc.get("clock_dir"), unsupported=desc.get("unsupported"))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "clock_dir": self.clock_dir, "unsupported": self.unsupported}

    def skew_clock(self, offset_seconds: float, probe: ClockProbe | None = None) -> Skewed:
        """Shift the domain's wall clock by `offset_seconds` (negative: behind). Inverse: unskew."""
        clock_dir = self._dir()
        probe = probe or self.probe
        t0, wall = time.monotonic(), time.time()
        armed = faketime.armed_pids(clock_dir)
        if self._service_pid is not None:  # a service's clock: its own process must follow the file
            pid = self._service_pid()
            if pid is None or pid not in armed:
                raise InjectionFailed(
                    f"{self.name}: its process ({pid or 'not running'}) does not follow the clock file "
                    f"{clock_dir}; services are armed when they start: restart it (`k2 stack stop/start "
                    f"{self.name}`)"
                )
        faketime.write_offset(clock_dir, offset_seconds)
        try:
            measured = self._settle(clock_dir, offset_seconds, probe, InjectionFailed)
        except BaseException:
            faketime.write_offset(clock_dir, 0.0)
            raise
        measured |= {"offset_s": offset_seconds, "armed_pids": armed}
        observed = measured.get("service_offset_s", measured.get("reader_offset_s"))
        return measure(Skewed, "skew_clock", self.name, self.kind, t0, wall, offset_seconds=offset_seconds,
                       observed_offset_s=observed, detail=measured)  # fmt: skip

    def unskew(self, probe: ClockProbe | None = None) -> Unskewed:
        """Back to the true time. Idempotent; a domain K2 cannot arm has nothing to undo."""
        t0, wall = time.monotonic(), time.time()
        if self.unsupported is not None:
            return measure(Unskewed, "unskew", self.name, self.kind, t0, wall, changed=False,
                           detail={"unsupported": self.unsupported})  # fmt: skip
        clock_dir = self._dir()
        if not (clock_dir / faketime.OFFSET).exists():  # never prepared: no process can have followed it
            return measure(Unskewed, "unskew", self.name, self.kind, t0, wall, changed=False,
                           detail={"clock_dir": str(clock_dir), "absent": True})  # fmt: skip
        previous = faketime.read_offset(clock_dir)
        faketime.write_offset(clock_dir, 0.0)
        measured = self._settle(clock_dir, 0.0, probe or self.probe, RestoreFailed)
        measured["previous_offset_s"] = previous
        observed = measured.get("service_offset_s", measured.get("reader_offset_s"))
        return measure(Unskewed, "unskew", self.name, self.kind, t0, wall, observed_offset_s=observed,
                       changed=previous != 0.0, detail=measured)  # fmt: skip

    def _dir(self) -> Path:
        if self.unsupported is not None:
            raise Unsupported(f"clock of {self.name}: {self.unsupported}")
        assert self.clock_dir is not None
        return Path(self.clock_dir)

    def _settle(
        self, clock_dir: Path, offset: float, probe: ClockProbe | None, error: type[Exception]
    ) -> dict[str, Any]:
        """Wait (bounded) until an armed reader, and the service's own probe if any, see `offset`."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        seen: dict[str, Any] = {}
        while True:
            seen["reader_offset_s"] = round(faketime.measure_offset(clock_dir), 3)
            ok = abs(seen["reader_offset_s"] - offset) <= TOLERANCE_S
            if ok and probe is not None:
                before = time.time()
                observed, resolution = probe(2.0)
                seen["service_offset_s"] = round(observed - (before + time.time()) / 2, 3)
                ok = abs(seen["service_offset_s"] - offset) <= TOLERANCE_S + resolution
            if ok:
                return seen
            if time.monotonic() >= deadline:
                raise error(
                    f"{self.name}: its clock should be off by {offset:+.3f} s but reads {seen} after "
                    f"{SETTLE_TIMEOUT_S:g} s; check that the service was started armed (`k2 stack status`)"
                )
            time.sleep(0.1)
