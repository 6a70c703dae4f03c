"""One fault of a schedule: what (a kind and its parameters), where (a service), when and for how long.

A planned fault is plain data, frozen and validated when built (the fault API checks the parameters), so a
schedule read back from a report is exactly as safe as one the nemesis drew. `index` is the fault's number
in the schedule the nemesis drew; the shrinker keeps it, so a minimal schedule names the originals.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from k2.chaos.errors import InvalidFault
from k2.chaos.faults import Fault, FaultSpec
from k2.explore.errors import ScheduleError
from k2.explore.kinds import kind

__all__ = ["MAX_FAULT_S", "MAX_RUN_S", "PlannedFault"]

MAX_FAULT_S = 3600.0
MAX_RUN_S = 24 * 3600.0
_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PARAM = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_FIELDS = ("index", "kind", "target", "at_s", "duration_s", "params")


@dataclass(frozen=True)
class PlannedFault:
    index: int
    kind: str
    target: str
    at_s: float  # seconds after the run's start
    duration_s: float
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        where = f"fault #{self.index}" if isinstance(self.index, int) else "a fault"
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise ScheduleError(f"{where}: index {self.index!r} must be a whole number >= 0")
        if not isinstance(self.target, str) or not _SERVICE.match(self.target):
            raise ScheduleError(f"{where}: target {self.target!r} is not a service name (e.g. 'kafka')")
        object.__setattr__(self, "at_s", _seconds(self.at_s, f"{where}: at_s", 0.0, MAX_RUN_S))
        object.__setattr__(self, "duration_s", _seconds(self.duration_s, f"{where}: duration_s", None, MAX_FAULT_S))
        if not isinstance(self.params, Mapping) or not all(isinstance(k, str) and _PARAM.match(k) for k in self.params):
            raise ScheduleError(f"{where}: params must map parameter names (lower_case) to values, got {self.params!r}")
        object.__setattr__(self, "params", {k: _plain(v, f"{where}: {k}") for k, v in self.params.items()})
        try:
            kind(self.kind).build(self.target, self.duration_s, self.params)
        except (InvalidFault, TypeError, ValueError) as exc:
            raise ScheduleError(f"{where} ({self.kind} on {self.target}): {exc}") from None

    @property
    def end_s(self) -> float:
        return self.at_s + self.duration_s

    def spec(self) -> FaultSpec[Any]:
        """The validated fault spec (k2.chaos.faults)."""
        return kind(self.kind).build(self.target, self.duration_s, self.params)

    def build(self, session: Any = None) -> Fault:
        """The fault, ready for `with`, through `session` (None: the innermost open one)."""
        return Fault(self.spec(), session=session)

    def with_(self, **changes: Any) -> PlannedFault:
        return replace(self, **changes)

    def describe(self) -> str:
        """`#3 service_failure writer-1 mode=kill at +4.0s for 2.5s`, for logs, progress and reports."""
        shown = " ".join(f"{k}={v}" for k, v in self.params.items() if v is not None)
        what = f"#{self.index} {self.kind} {self.target}{' ' + shown if shown else ''}"
        return f"{what} at +{self.at_s:g}s for {self.duration_s:g}s"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "kind": self.kind, "target": self.target, "at_s": self.at_s,
                "duration_s": self.duration_s, "params": dict(self.params)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: object, where: str = "a fault") -> PlannedFault:
        """Rebuild from `to_dict()` output, refusing anything else (missing or unknown keys, wrong types)."""
        if not isinstance(data, Mapping):
            raise ScheduleError(f"{where}: expected an object with {', '.join(_FIELDS)}, got {type(data).__name__}")
        missing = [k for k in _FIELDS if k not in data]
        unknown = sorted(str(k) for k in data if k not in _FIELDS)
        if missing or unknown:
            problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"unknown key(s) {', '.join(unknown)}"] if unknown else []
            )
            raise ScheduleError(f"{where}: {'; '.join(problems)}; a fault has exactly {', '.join(_FIELDS)}")
        if not isinstance(data["kind"], str):
            raise ScheduleError(f"{where}: kind must be a string, got {data['kind']!r}")
        try:
            kind(data["kind"])
        except InvalidFault as exc:
            raise ScheduleError(f"{where}: {exc}") from None
        return cls(data["index"], data["kind"], data["target"], data["at_s"], data["duration_s"], data["params"])


def _seconds(value: object, what: str, minimum: float | None, maximum: float) -> float:
    """Seconds, rounded to the millisecond; `minimum` None means strictly positive."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScheduleError(f"{what}={value!r}: give a number of seconds")
    if (minimum is None and value <= 0) or (minimum is not None and value < minimum):
        raise ScheduleError(f"{what}={value} must be {'positive' if minimum is None else f'>= {minimum:g}'}")
    if value > maximum:
        raise ScheduleError(f"{what}={value} is more than {maximum:g} s; explore runs are meant to end, give less")
    return round(float(value), 3)


def _plain(value: Any, what: str) -> Any:
    """A JSON scalar, or a short list of strings (client labels): nothing else travels in a schedule."""
    if value is None or isinstance(value, bool | int | str):
        if isinstance(value, str) and len(value) > 64:
            raise ScheduleError(f"{what}: a string of {len(value)} characters; parameters are short values")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ScheduleError(f"{what}={value}: give a finite number")
        return value
    if isinstance(value, list | tuple) and len(value) <= 16 and all(isinstance(v, str) and len(v) <= 64 for v in value):
        return list(value)
    raise ScheduleError(f"{what}={value!r}: parameters are numbers, strings, null or a short list of strings")
