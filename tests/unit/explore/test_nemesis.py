"""The nemesis: the seed alone decides the schedule, and the schedule keeps the rules it promises."""

from __future__ import annotations

import pytest

from k2.explore.errors import ScheduleError
from k2.explore.kinds import KINDS, WRITER_KINDS, Inventory
from k2.explore.nemesis import Nemesis
from k2.explore.schedule import Schedule

from .helpers import INVENTORY, WRITERS


def nemesis(**options: object) -> Nemesis:
    return Nemesis(INVENTORY, writers=WRITERS, **options)  # type: ignore[arg-type]


def test_same_seed_same_schedule_and_other_seeds_differ() -> None:
    first = nemesis(intensity="high").schedule(42, 120)
    again = nemesis(intensity="high").schedule(42, 120)
    assert first == again and first.to_json() == again.to_json()
    assert len(first.faults) > 5
    others = {nemesis(intensity="high").schedule(seed, 120).to_json() for seed in range(43, 53)}
    assert first.to_json() not in others and len(others) == 10


def test_schedule_records_every_drawn_value_and_round_trips() -> None:
    schedule = nemesis(intensity="high", max_concurrent=3).schedule(7, 300)
    back = Schedule.from_json(schedule.to_json())
    assert back == schedule
    assert back.nemesis["intensity"] == "high" and back.nemesis["max_concurrent"] == 3
    for fault in back.faults:  # the recorded values are all a fault needs: it builds from them alone
        assert set(fault.to_dict()) == {"index", "kind", "target", "at_s", "duration_s", "params"}
        assert fault.build().__class__.__name__


@pytest.mark.parametrize("intensity", ["low", "med", "high"])
@pytest.mark.parametrize("max_concurrent", [1, 2, 4])
def test_rules_hold_over_many_seeds(intensity: str, max_concurrent: int) -> None:
    for seed in range(20):
        schedule = nemesis(intensity=intensity, max_concurrent=max_concurrent).schedule(seed, 180, warmup_s=5)
        settle = schedule.nemesis["settle_s"]
        assert schedule.max_concurrent() <= max_concurrent
        for fault in schedule.faults:
            assert fault.at_s >= 5, "nothing starts in the warm-up"
            assert fault.end_s <= 180 - settle + 1e-9, "everything has ended before the settle period"
            if fault.target in WRITERS:
                assert fault.kind in WRITER_KINDS
            assert fault.target in INVENTORY.services(KINDS[fault.kind].facet)
        by_target: dict[str, float] = {}
        for fault in schedule.faults:  # one fault per service at a time (Schedule also refuses it)
            assert fault.at_s >= by_target.get(fault.target, 0.0)
            by_target[fault.target] = fault.end_s


def test_intensity_changes_how_much_happens() -> None:
    counts = {i: sum(len(nemesis(intensity=i).schedule(s, 600).faults) for s in range(10)) for i in ("low", "high")}
    assert counts["high"] > 2 * counts["low"]


def test_every_family_and_the_writers_are_drawn() -> None:
    drawn = [f for seed in range(30) for f in nemesis(intensity="high").schedule(seed, 300).faults]
    assert {KINDS[f.kind].family for f in drawn} == {"lifecycle", "partition", "network", "resources", "clock"}
    assert {f.target for f in drawn if f.kind == "service_failure"} >= set(WRITERS)
    assert any(f.params.get("clients") for f in drawn if f.kind == "network_partition"), "partial partitions"


def test_kinds_and_services_can_be_narrowed() -> None:
    only = Nemesis(INVENTORY.narrowed(["s3", "writer-1"]), kinds=["service_failure", "latency"], writers=WRITERS)
    drawn = [f for seed in range(20) for f in only.schedule(seed, 200).faults]
    assert drawn and {f.kind for f in drawn} <= {"service_failure", "latency"}
    assert {f.target for f in drawn} <= {"s3", "writer-1"}


def test_bad_settings_are_refused_with_the_remedy() -> None:
    with pytest.raises(ScheduleError, match="--intensity 'extreme'"):
        nemesis(intensity="extreme")
    with pytest.raises(ScheduleError, match="--max-concurrent"):
        nemesis(max_concurrent=0)
    with pytest.raises(ScheduleError, match="unknown kind.*nope"):
        nemesis(kinds=["nope"])
    with pytest.raises(ScheduleError, match="none of the fault kinds disk_fill applies"):
        Nemesis(Inventory(process=("s3",)), kinds=["disk_fill"])
