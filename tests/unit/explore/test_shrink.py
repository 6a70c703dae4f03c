"""The shrinker against failures defined by a pure function of the schedule (no services)."""

from __future__ import annotations

from collections import Counter

import pytest

from k2.explore.errors import ShrinkError
from k2.explore.schedule import Schedule
from k2.explore.shrink import Budget, shrink

from .helpers import kill, schedule_of

TARGET = "data_loss:lost"


def eight_faults() -> Schedule:
    faults = [kill(i, f"writer-{i}", 4 + 3 * i, 4.0) for i in range(8)]
    return schedule_of(*faults, duration_s=60)


class Recorder:
    """A trial that fails when faults 2 and 5 both run and fault 2 lasts at least 1 s."""

    def __init__(self, needed: tuple[int, ...] = (2, 5), min_s: float = 1.0) -> None:
        self.needed, self.min_s = needed, min_s
        self.runs: list[Schedule] = []

    def __call__(self, schedule: Schedule) -> str:
        self.runs.append(schedule)
        by_index = {f.index: f for f in schedule.faults}
        present = all(i in by_index for i in self.needed)
        return TARGET if present and by_index[2].duration_s >= self.min_s else "pass"


def test_finds_the_two_faults_and_shortens_them() -> None:
    trial = Recorder()
    result = shrink(eight_faults(), TARGET, trial)
    assert result.reproduced and not result.exhausted
    assert result.minimal.indexes == (2, 5)
    fault2 = result.minimal.faults[0]
    assert 1.0 <= fault2.duration_s < 2.0, "halved from 4 s while it still reproduced"
    assert result.minimal.faults[1].duration_s == 0.5, "fault 5 halved to the floor"
    assert result.minimal.faults[0].at_s == result.minimal.warmup_s, "moved to just after the warm-up"
    assert result.minimal.duration_s < 60, "the run ends soon after its last fault"
    assert result.runs == len(trial.runs) < 30
    keys = Counter((s.duration_s, tuple((f.index, f.at_s, f.duration_s) for f in s.faults)) for s in trial.runs)
    assert max(keys.values()) == 1, "no candidate is run twice"
    assert result.attempts[0].step == "empty"
    assert "shrunk from" in result.minimal.origin


def test_a_failure_without_faults_shrinks_to_none() -> None:
    result = shrink(eight_faults(), TARGET, lambda s: TARGET)
    assert result.minimal.faults == () and result.runs == 1


def test_a_failure_that_does_not_reproduce_says_so() -> None:
    result = shrink(eight_faults(), TARGET, lambda s: "pass")
    assert not result.reproduced and result.minimal.indexes == eight_faults().indexes


def test_another_failure_is_not_the_target() -> None:
    result = shrink(eight_faults(), TARGET, lambda s: "hang:query" if s.faults else "pass")
    assert not result.reproduced


def test_budget_cuts_the_search_and_keeps_the_best_so_far() -> None:
    trial = Recorder()
    # empty, two halves, four quarters (none reproduce), then the first complement ({2..7}) does
    result = shrink(eight_faults(), TARGET, trial, budget=Budget(runs=8))
    assert result.exhausted and result.runs == 8
    assert result.reproduced and result.minimal.indexes == (2, 3, 4, 5, 6, 7)


def test_flaky_failures_get_more_attempts() -> None:
    calls = Counter[tuple[int, ...]]()

    def flaky(schedule: Schedule) -> str:
        calls[schedule.indexes] += 1
        return TARGET if 3 in schedule.indexes and calls[schedule.indexes] >= 2 else "pass"

    result = shrink(eight_faults(), TARGET, flaky, attempts=2)
    assert result.minimal.indexes == (3,)


def test_bad_budget_is_refused() -> None:
    with pytest.raises(ShrinkError, match="at least 1 run"):
        Budget(runs=0)
    with pytest.raises(ShrinkError, match="--attempts"):
        shrink(eight_faults(), TARGET, lambda s: "pass", attempts=0)
