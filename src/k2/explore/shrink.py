"""Shrinking: the fewest, shortest faults that still reproduce a failing run.

    result = shrink(schedule, "data_loss:lost", trial, budget=Budget(runs=30, seconds=1800))
    result.minimal          # a Schedule; result.attempts says what was tried and what each run gave

`trial(schedule)` runs one candidate and returns its signature (the outcome class and what kind of failure,
e.g. `data_loss:lost`, `data_loss:duplicated`, `hang:query`); a candidate reproduces when its signature is
the target's. The search, each step keeping a candidate only if it reproduces:

1. no fault at all (a failure that needs no fault is worth knowing first);
2. delta debugging over the faults (Zeller's ddmin: halves, then finer chunks and their complements) down
   to a set from which no single fault can be removed;
3. shorter faults: each remaining fault's duration halved while it still reproduces;
4. a shorter run: the faults moved to just after the warm-up.

Every candidate run ends `settle_s` after its last fault (a run's time is mostly what follows its faults),
and is never run twice. The budget (runs and wall time) bounds the search; when it runs out, the smallest
reproducing schedule found so far is the result (`exhausted` says so). Reproduction is not guaranteed for
timing-dependent failures: `attempts` runs a candidate up to that many times before giving up on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from k2.explore.errors import ShrinkError
from k2.explore.schedule import Schedule

__all__ = ["Attempt", "Budget", "ShrinkResult", "shrink"]

Trial = Callable[[Schedule], str]
MIN_FAULT_S = 0.5


@dataclass(frozen=True)
class Budget:
    """At most `runs` candidate runs and `seconds` of wall time (checked before each run)."""

    runs: int = 40
    seconds: float = 3600.0

    def __post_init__(self) -> None:
        if isinstance(self.runs, bool) or not isinstance(self.runs, int) or self.runs < 1:
            raise ShrinkError(f"--budget runs={self.runs!r}: give at least 1 run")
        if not isinstance(self.seconds, int | float) or self.seconds <= 0:
            raise ShrinkError(f"--budget seconds={self.seconds!r}: give a positive number of seconds")


@dataclass(frozen=True)
class Attempt:
    """One candidate run: which faults (by original index) with which durations, and what it gave."""

    step: str  # empty | faults | durations | shift
    faults: tuple[int, ...]
    durations: tuple[float, ...]
    run_s: float  # the candidate's scheduled length
    signature: str
    reproduced: bool
    wall_s: float

    def to_dict(self) -> dict[str, object]:
        return {
            "step": self.step,
            "faults": list(self.faults),
            "durations": list(self.durations),
            "run_s": self.run_s,
            "signature": self.signature,
            "reproduced": self.reproduced,
            "wall_s": round(self.wall_s, 3),
        }


@dataclass
class ShrinkResult:
    original: Schedule
    minimal: Schedule
    target: str
    attempts: list[Attempt] = field(default_factory=list)
    wall_s: float = 0.0
    exhausted: bool = False  # the budget ran out before the search was done
    reproduced: bool = False  # some candidate reproduced the target (else `minimal` is the original, unconfirmed)

    @property
    def runs(self) -> int:
        return len(self.attempts)

    def to_dict(self) -> dict[str, object]:
        return {
            "target": self.target,
            "runs": self.runs,
            "wall_s": round(self.wall_s, 3),
            "exhausted": self.exhausted,
            "reproduced": self.reproduced,
            "original": self.original.to_dict(),
            "minimal": self.minimal.to_dict(),
            "attempts": [a.to_dict() for a in self.attempts],
        }


class _OutOfBudget(Exception):
    pass


class _Search:
    """The state of one shrink: the budget, the cache of tried candidates and the best schedule so far."""

    def __init__(
        self,
        target: str,
        trial: Trial,
        budget: Budget,
        attempts: int,
        settle_s: float,
        on_attempt: Callable[[Attempt], None] | None,
    ) -> None:
        self.target, self.trial, self.budget, self.attempts = target, trial, budget, attempts
        self.settle_s, self.on_attempt = settle_s, on_attempt
        self.started = time.monotonic()
        self.tried: dict[tuple[object, ...], bool] = {}
        self.log: list[Attempt] = []
        self.best: Schedule | None = None  # the smallest candidate that reproduced

    def fitted(self, schedule: Schedule) -> Schedule:
        """The candidate ending `settle_s` after its last fault (never longer than it was)."""
        last = max((f.end_s for f in schedule.faults), default=schedule.warmup_s)
        end = round(min(schedule.duration_s, max(last, schedule.warmup_s) + self.settle_s), 3)
        return schedule.ending_at(end) if end < schedule.duration_s else schedule

    def reproduces(self, step: str, candidate: Schedule) -> bool:
        candidate = self.fitted(candidate)
        key = (candidate.duration_s, *((f.index, f.at_s, f.duration_s) for f in candidate.faults))
        if key in self.tried:
            return self.tried[key]
        reproduced = False
        for _ in range(self.attempts):
            if len(self.log) >= self.budget.runs or time.monotonic() - self.started >= self.budget.seconds:
                raise _OutOfBudget
            began = time.monotonic()
            signature = self.trial(candidate)
            reproduced = signature == self.target
            attempt = Attempt(
                step,
                candidate.indexes,
                tuple(f.duration_s for f in candidate.faults),
                candidate.duration_s,
                signature,
                reproduced,
                time.monotonic() - began,
            )
            self.log.append(attempt)
            if self.on_attempt is not None:
                self.on_attempt(attempt)
            if reproduced:
                if self.best is None or _size(candidate) < _size(self.best):
                    self.best = candidate
                break
        self.tried[key] = reproduced
        return reproduced


def shrink(
    schedule: Schedule,
    target: str,
    trial: Trial,
    *,
    budget: Budget | None = None,
    attempts: int = 1,
    settle_s: float | None = None,
    on_attempt: Callable[[Attempt], None] | None = None,
) -> ShrinkResult:
    """See the module docstring. `settle_s` defaults to what the nemesis left after the faults (or 3 s)."""
    if not isinstance(attempts, int) or not 1 <= attempts <= 10:
        raise ShrinkError(f"--attempts {attempts!r}: give a whole number from 1 to 10")
    if settle_s is None:
        drawn = schedule.nemesis.get("settle_s")
        settle_s = float(drawn) if isinstance(drawn, int | float) and drawn > 0 else 3.0
    search = _Search(target, trial, budget or Budget(), attempts, settle_s, on_attempt)
    exhausted = False
    try:
        if not (schedule.faults and search.reproduces("empty", schedule.keeping(()))):
            reduced = _ddmin(search, schedule)
            if reduced.indexes != schedule.indexes or search.reproduces("faults", reduced):
                _shifted(search, _shorter_faults(search, reduced))
    except _OutOfBudget:
        exhausted = True
    found = search.best
    minimal = schedule if found is None else found
    origin = f"shrunk from a {schedule.origin} schedule ({len(schedule.faults)} -> {len(minimal.faults)} faults)"
    return ShrinkResult(
        schedule,
        replace(minimal, origin=origin),
        target,
        search.log,
        time.monotonic() - search.started,
        exhausted,
        found is not None,
    )


def _ddmin(search: _Search, schedule: Schedule) -> Schedule:
    """Delta debugging over the faults: a reproducing subset from which no chunk can be dropped."""
    items: list[int] = list(schedule.indexes)
    n = 2
    while len(items) >= 2:
        chunks = _split(items, n)
        reduced = False
        for chunk in chunks:
            if search.reproduces("faults", schedule.keeping(chunk)):
                items, n, reduced = list(chunk), 2, True
                break
        if not reduced and n > 2:  # with two chunks the complements are the chunks themselves
            for chunk in chunks:
                rest = [i for i in items if i not in chunk]
                if search.reproduces("faults", schedule.keeping(rest)):
                    items, n, reduced = rest, max(n - 1, 2), True
                    break
        if not reduced:
            if n >= len(items):
                break
            n = min(len(items), 2 * n)
    return schedule.keeping(items)


def _split(items: Sequence[int], n: int) -> list[list[int]]:
    size, extra = divmod(len(items), n)
    chunks, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        chunks.append(list(items[start:end]))
        start = end
    return [c for c in chunks if c]


def _shorter_faults(search: _Search, schedule: Schedule) -> Schedule:
    """Halve each fault's duration while the run still reproduces (never below MIN_FAULT_S)."""
    for index in schedule.indexes:
        while True:
            fault = next(f for f in schedule.faults if f.index == index)
            half = round(fault.duration_s / 2, 1)
            if half < MIN_FAULT_S:
                break
            candidate = schedule.with_fault(fault.with_(duration_s=half))
            if not search.reproduces("durations", candidate):
                break
            schedule = candidate
    return schedule


def _shifted(search: _Search, schedule: Schedule) -> Schedule:
    """Every fault moved earlier, the first starting right after the warm-up: a shorter run."""
    if not schedule.faults:
        return schedule
    gap = round(schedule.faults[0].at_s - schedule.warmup_s, 3)
    if gap < 1.0:
        return schedule
    moved = replace(schedule, faults=tuple(f.with_(at_s=round(f.at_s - gap, 3)) for f in schedule.faults))
    return moved if search.reproduces("shift", moved) else schedule


def _size(schedule: Schedule) -> tuple[int, float, float]:
    """Smaller means fewer faults, then less fault time, then a shorter run."""
    return (len(schedule.faults), schedule.fault_time_s(), schedule.duration_s)
