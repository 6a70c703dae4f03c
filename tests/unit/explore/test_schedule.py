"""Schedules read back from reports (--replay, shrink) are validated as strictly as drawn ones."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k2.explore.errors import ScheduleError
from k2.explore.planned import PlannedFault
from k2.explore.schedule import Schedule, Workload

from .helpers import kill, schedule_of


def good() -> dict[str, Any]:
    return schedule_of(kill(0, "writer-1", 5, 2), kill(1, "kafka", 6, 3)).to_dict()


def test_round_trip_keeps_every_value() -> None:
    schedule = Schedule.from_dict(good())
    assert schedule.to_dict() == good()
    assert [f.index for f in schedule.faults] == [0, 1]
    assert schedule.faults[0].describe() == "#0 service_failure writer-1 mode=kill at +5s for 2s"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(extra=1), "unknown key.*extra"),
        (lambda d: d.pop("seed"), "missing seed"),
        (lambda d: d.update(seed=-1), "seed=-1"),
        (lambda d: d.update(seed=True), "seed=True"),
        (lambda d: d.update(version=99), "version 99"),
        (lambda d: d.update(duration_s="60"), "duration_s='60'"),
        (lambda d: d.update(warmup_s=60.0), "warmup_s=60 leaves no time"),
        (lambda d: d.update(faults={}), "give a list"),
        (lambda d: d["faults"].append(5), "schedule.faults\\[2\\]: expected an object"),
        (lambda d: d["faults"][0].update(kind="meteor"), "unknown fault kind 'meteor'"),
        (lambda d: d["faults"][0].update(target="../etc"), "not a service name"),
        (lambda d: d["faults"][0].update(at_s=float("inf")), "give a number of seconds"),
        (lambda d: d["faults"][0].update(duration_s=0), "must be positive"),
        (lambda d: d["faults"][0].update(duration_s=7200), "more than 3600 s"),
        (lambda d: d["faults"][0]["params"].update(mode="explode"), "fault #0 .*unknown mode 'explode'"),
        (lambda d: d["faults"][0]["params"].update(colour="red"), "fault #0 .*colour"),
        (lambda d: d["faults"][0]["params"].update(mode=["a"] * 40), "parameters are numbers"),
        (lambda d: d["faults"][0].pop("params"), "missing params"),
        (lambda d: d["faults"][1].update(index=0), "index 0 appears twice"),
        (lambda d: d["faults"][1].update(at_s=58), "ends at \\+61s, after the run"),
        (lambda d: d["faults"][1].update(target="writer-1"), "#0 and #1 both act on writer-1"),
        (lambda d: d["workload"].update(rate=0), "workload.rate=0"),
        (lambda d: d["workload"].update(planted="all"), "workload.planted='all'"),
        (lambda d: d["workload"].update(sneaky=1), "workload: unknown key"),
        (lambda d: d.update(nemesis={"x": float("nan")}), "not a finite number"),
    ],
)
def test_bad_schedules_are_refused_naming_the_field(change: Any, message: str) -> None:
    data = good()
    change(data)
    with pytest.raises(ScheduleError, match=message):
        Schedule.from_dict(data)


def test_json_that_is_not_json_is_refused() -> None:
    with pytest.raises(ScheduleError, match="not valid JSON"):
        Schedule.from_json("{")
    with pytest.raises(ScheduleError, match="NaN"):
        Schedule.from_json(json.dumps(good()).replace('"at_s": 5.0', '"at_s": NaN'))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data())
def test_any_damage_is_a_schedule_error_never_another_exception(data: st.DataObject) -> None:
    doc = good()
    path = data.draw(st.sampled_from(["top", "workload", "fault", "params"]))
    target = {"top": doc, "workload": doc["workload"], "fault": doc["faults"][0], "params": doc["faults"][0]["params"]}
    node = target[path]
    key = data.draw(st.sampled_from([*node, "zz"]))
    node[key] = data.draw(json_values)
    with contextlib.suppress(ScheduleError):  # anything else (TypeError, KeyError...) fails the test
        Schedule.from_dict(doc)


def test_derived_schedules_keep_the_original_numbers() -> None:
    schedule = Schedule.from_dict(good())
    only = schedule.keeping([1])
    assert only.indexes == (1,) and only.faults[0] == schedule.faults[1]
    longer = schedule.with_fault(schedule.faults[0].with_(duration_s=0.5))
    assert longer.faults[0].duration_s == 0.5 and longer.faults[1] == schedule.faults[1]
    with pytest.raises(ScheduleError, match="no fault numbered \\[7\\]"):
        schedule.keeping([7])
    assert schedule.max_concurrent() == 2 and schedule.fault_time_s() == 5.0


def test_planned_fault_builds_the_catalogue_spec() -> None:
    fault = PlannedFault(3, "latency", "kafka", 1, 2, {"latency": 300, "jitter": 10, "stream": "upstream"})
    spec = fault.spec()
    assert (spec.kind, spec.target, spec.duration_s) == ("latency", "kafka", 2.0)
    assert spec.parameters()["attributes"] == {"latency": 300, "jitter": 10}
    assert fault.build().spec == spec


def test_workload_defaults_are_valid() -> None:
    assert Workload().writers == 2 and Workload.from_dict({}) == Workload()
