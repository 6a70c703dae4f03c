"""A schedule: everything an exploration run does, as data, before it runs.

The seed, how long the run lasts, the workload (rate, writers, queries, any planted test-only bug) and every
fault with every drawn value. It is written to the report before the run starts and read back by
`--replay` and `k2 chaos shrink`, so reading one is as strict as building one: unknown keys, wrong types,
values out of range, faults outside the run or two faults on one service at once are each refused with the
field named (`ScheduleError`), before anything is touched.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from k2.explore.errors import ScheduleError
from k2.explore.planned import MAX_RUN_S, PlannedFault

__all__ = ["SCHEDULE_VERSION", "Schedule", "Workload"]

SCHEDULE_VERSION = 1
MAX_FAULTS = 10_000
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,63}$")


@dataclass(frozen=True)
class Workload:
    """The pipeline an exploration drives: `rate` trades a second from one producer, `writers` Iceberg
    writer processes in one consumer group, a query every `query_interval_s` (deadline `query_timeout_s`).
    `planted` names test-only bugs armed in the platform (k2.platform.planted; empty outside tests)."""

    rate: int = 200
    writers: int = 2
    partitions: int = 3
    query_interval_s: float = 1.0
    query_timeout_s: float = 3.0
    planted: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, low, high in (("rate", 1, 100_000), ("writers", 1, 8), ("partitions", 1, 64)):
            count: object = getattr(self, name)
            if isinstance(count, bool) or not isinstance(count, int) or not low <= count <= high:
                raise ScheduleError(f"workload.{name}={count!r}: give a whole number from {low} to {high}")
        for name, shortest, longest in (("query_interval_s", 0.05, 3600.0), ("query_timeout_s", 0.1, 600.0)):
            seconds: object = getattr(self, name)
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not shortest <= seconds <= longest:
                raise ScheduleError(f"workload.{name}={seconds!r}: give seconds from {shortest:g} to {longest:g}")
            object.__setattr__(self, name, float(seconds))
        planted: object = self.planted
        if isinstance(planted, str) or not isinstance(planted, list | tuple):
            raise ScheduleError(f"workload.planted={planted!r}: give a list of planted bug names (usually empty)")
        if not all(isinstance(p, str) and _NAME.match(p) for p in planted) or len(planted) > 8:
            raise ScheduleError(f"workload.planted={planted!r}: names are lower-case words joined by '-'")
        object.__setattr__(self, "planted", tuple(planted))

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["planted"] = list(self.planted)
        return data

    @classmethod
    def from_dict(cls, data: object) -> Workload:
        return cls(**_exact(data, [f.name for f in fields(cls)], "workload", optional=True))


@dataclass(frozen=True)
class Schedule:
    """See the module docstring. `warmup_s`: the calm start in which the steady state's baseline is
    measured (no fault starts before it). `nemesis`: how the faults were drawn (for the report and for
    drawing again); `origin`: where this schedule came from (drawn, replayed, shrunk from ...)."""

    seed: int
    duration_s: float
    faults: tuple[PlannedFault, ...]
    warmup_s: float = 3.0
    workload: Workload = field(default_factory=Workload)
    nemesis: Mapping[str, Any] = field(default_factory=dict, hash=False)
    origin: str = "drawn"

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ScheduleError(f"seed={self.seed!r}: give a whole number from 0 to 2**63 - 1")
        for name, low in (("duration_s", 1.0), ("warmup_s", 0.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ScheduleError(f"{name}={value!r}: give a number of seconds")
            if not low <= value <= MAX_RUN_S:
                raise ScheduleError(f"{name}={value}: give from {low:g} to {MAX_RUN_S:g} seconds")
            object.__setattr__(self, name, round(float(value), 3))
        if self.warmup_s >= self.duration_s:
            raise ScheduleError(f"warmup_s={self.warmup_s:g} leaves no time in a {self.duration_s:g} s run; "
                                "give a longer duration or a shorter warm-up")  # fmt: skip
        if not isinstance(self.faults, list | tuple) or len(self.faults) > MAX_FAULTS:
            raise ScheduleError(f"faults: give a list of at most {MAX_FAULTS} faults")
        if not all(isinstance(f, PlannedFault) for f in self.faults):
            raise ScheduleError("faults: every entry must be a PlannedFault (use Schedule.from_dict for plain data)")
        ordered = tuple(sorted(self.faults, key=lambda f: (f.at_s, f.index)))
        object.__setattr__(self, "faults", ordered)
        if not isinstance(self.workload, Workload):
            raise ScheduleError("workload: must be a Workload")
        if not isinstance(self.nemesis, Mapping) or not isinstance(self.origin, str) or len(self.origin) > 500:
            raise ScheduleError("nemesis must be an object and origin a short text")
        object.__setattr__(self, "nemesis", _jsonable(dict(self.nemesis), "nemesis"))
        self._check_faults()

    def _check_faults(self) -> None:
        seen: dict[int, PlannedFault] = {}
        last_end: dict[str, PlannedFault] = {}
        for fault in self.faults:
            if fault.index in seen:
                raise ScheduleError(f"faults: index {fault.index} appears twice; each fault needs its own number")
            seen[fault.index] = fault
            if fault.end_s > self.duration_s + 1e-9:
                raise ScheduleError(
                    f"fault #{fault.index} ends at +{fault.end_s:g}s, after the run ({self.duration_s:g} s); "
                    "shorten it or lengthen the run"
                )
            before = last_end.get(fault.target)
            if before is not None and before.end_s > fault.at_s + 1e-9:
                raise ScheduleError(
                    f"faults #{before.index} and #{fault.index} both act on {fault.target} at +{fault.at_s:g}s; "
                    "a service takes one fault at a time: move one of them"
                )
            last_end[fault.target] = fault

    # -- what it contains ---------------------------------------------------------------------------

    @property
    def indexes(self) -> tuple[int, ...]:
        return tuple(f.index for f in self.faults)

    def active_at(self, t: float) -> list[PlannedFault]:
        return [f for f in self.faults if f.at_s <= t < f.end_s]

    def max_concurrent(self) -> int:
        """The most faults active at one moment."""
        edges = sorted([(f.at_s, 1) for f in self.faults] + [(f.end_s, -1) for f in self.faults])
        peak = current = 0
        for _, step in edges:
            current += step
            peak = max(peak, current)
        return peak

    def fault_time_s(self) -> float:
        return round(sum(f.duration_s for f in self.faults), 3)

    def summary(self) -> str:
        kinds = sorted({f.kind for f in self.faults})
        return (f"seed {self.seed}: {len(self.faults)} fault(s) over {self.duration_s:g} s "
                f"({', '.join(kinds) or 'none'}; up to {self.max_concurrent()} at once)")  # fmt: skip

    # -- derived schedules (replay and shrink) --------------------------------------------------------

    def keeping(self, indexes: Iterable[int], *, origin: str | None = None) -> Schedule:
        """The same run with only the faults numbered `indexes` (their times and parameters unchanged)."""
        keep = set(indexes)
        unknown = keep - set(self.indexes)
        if unknown:
            raise ScheduleError(f"no fault numbered {sorted(unknown)} in this schedule (it has {list(self.indexes)})")
        return replace(self, faults=tuple(f for f in self.faults if f.index in keep), origin=origin or self.origin)

    def with_fault(self, fault: PlannedFault, *, origin: str | None = None) -> Schedule:
        """The same run with the fault of the same index replaced by `fault`."""
        return replace(self, faults=tuple(fault if f.index == fault.index else f for f in self.faults),
                       origin=origin or self.origin)  # fmt: skip

    def ending_at(self, duration_s: float, *, origin: str | None = None) -> Schedule:
        return replace(self, duration_s=duration_s, origin=origin or self.origin)

    # -- JSON --------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SCHEDULE_VERSION,
            "seed": self.seed,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "workload": self.workload.to_dict(),
            "nemesis": dict(self.nemesis),
            "origin": self.origin,
            "faults": [f.to_dict() for f in self.faults],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_dict(cls, data: object) -> Schedule:
        """A schedule from `to_dict()` output; anything else is refused with the field named."""
        names = ["version", "seed", "duration_s", "warmup_s", "workload", "nemesis", "origin", "faults"]
        values = _exact(data, names, "schedule", optional=False)
        version = values.pop("version")
        if version != SCHEDULE_VERSION:
            raise ScheduleError(
                f"schedule version {version!r} is not {SCHEDULE_VERSION} (written by another K2 version); "
                "draw it again with the same seed"
            )
        raw_faults = values["faults"]
        if not isinstance(raw_faults, list) or len(raw_faults) > MAX_FAULTS:
            raise ScheduleError(f"schedule.faults: give a list of at most {MAX_FAULTS} faults")
        values["faults"] = tuple(PlannedFault.from_dict(f, f"schedule.faults[{i}]") for i, f in enumerate(raw_faults))
        values["workload"] = Workload.from_dict(values["workload"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> Schedule:
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise ScheduleError(f"the schedule is not valid JSON ({exc}); pass a report.json K2 wrote") from None
        return cls.from_dict(data)


def _exact(data: object, names: list[str], where: str, *, optional: bool) -> dict[str, Any]:
    """`data` as keyword arguments: an object with only keys from `names` (all of them unless `optional`)."""
    if not isinstance(data, Mapping):
        raise ScheduleError(f"{where}: expected an object, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in names)
    if unknown:
        raise ScheduleError(f"{where}: unknown key(s) {', '.join(unknown)}; it takes {', '.join(names)}")
    missing = [n for n in names if n not in data]
    if missing and not optional:
        raise ScheduleError(f"{where}: missing {', '.join(missing)}")
    return {k: data[k] for k in names if k in data}


def _jsonable(value: Any, where: str, depth: int = 0) -> Any:
    """Plain JSON data only (the nemesis settings): bounded depth, no NaN, string keys."""
    if depth > 8:
        raise ScheduleError(f"{where}: nested too deeply")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ScheduleError(f"{where}: {value} is not a finite number")
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v, where, depth + 1) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    raise ScheduleError(f"{where}: {type(value).__name__} is not plain JSON data")


def _refuse_constant(name: str) -> Any:
    raise ScheduleError(f"the schedule holds {name}, which is not JSON; pass a report.json K2 wrote")
