"""Steady-state rules and probes over a meter fed by hand (no services)."""

from __future__ import annotations

import pytest

from k2.explore.errors import AbortRuleError
from k2.explore.meter import Meter
from k2.explore.probes import LagProbe, QuerySuccessProbe, ThroughputProbe, standard_probes
from k2.explore.rules import STEADY_STATE, Watch, parse_rule


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("text", "probe", "op", "value", "relative", "hold"),
    [
        ("lag>30s for 20s", "lag", ">", 30.0, False, 20.0),
        ("throughput<20% for 10s", "throughput", "<", 0.2, True, 10.0),
        ("throughput < 50/s", "throughput", "<", 50.0, False, 0.0),
        ("p99>2500ms", "p99", ">", 2.5, False, 0.0),
        ("query_success<50% for 1m", "query_success", "<", 50.0, False, 60.0),
        ("query_p99>=3 for 500ms", "query_p99", ">=", 3.0, False, 0.5),
    ],
)
def test_rules_parse(text: str, probe: str, op: str, value: float, relative: bool, hold: float) -> None:
    rule = parse_rule(text)
    assert (rule.probe, rule.op, rule.value, rule.relative, rule.hold_s) == (probe, op, value, relative, hold)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lag", "is not PROBE OP VALUE"),
        ("latency>3s", "no probe 'latency'; the probes are"),
        ("lag>30% for 2s", "lag is a time"),
        ("throughput<3s", "records/s or % of the baseline"),
        ("query_success<3s", "is a percentage"),
        ("lag>30s for ever", "is not PROBE OP VALUE"),
        ("lag>30s; rm -rf /", "is not PROBE OP VALUE"),
        ("x" * 300, "give a short text"),
    ],
)
def test_bad_rules_name_the_problem_and_show_an_example(text: str, message: str) -> None:
    with pytest.raises(AbortRuleError, match=message):
        parse_rule(text)


def test_default_steady_state_parses() -> None:
    assert [parse_rule(r).probe for r in STEADY_STATE] == ["throughput", "p99", "lag", "query_success"]


def test_watch_triggers_after_holding_and_records_violations() -> None:
    watch = Watch(parse_rule("lag>30s for 20s"))
    fed = [(0, 5.0), (1, 31.0), (10, 40.0), (15, None), (20, 35.0), (21, 50.0), (22, 2.0), (30, 33.0)]
    triggered = [t for t, value in fed if watch.observe(t, value, None)]
    assert triggered == [21], "held from +1 s; unknown at +15 s neither breaks nor starts it; fires at +21 s"
    watch.close(40)
    assert [(v.start_s, v.end_s, v.worst) for v in watch.violations] == [(1, 22, 50.0), (30, 40, 33.0)]


def test_relative_rule_needs_a_baseline() -> None:
    rule = parse_rule("throughput<50%")
    assert rule.holds(40.0, None) is None
    assert rule.holds(40.0, 100.0) is True and rule.holds(60.0, 100.0) is False


def test_meter_windows_and_probes() -> None:
    clock = Clock()
    meter = Meter(clock)
    meter.start()
    for second in range(4):
        for i in range(10 * (second + 1)):
            meter.invoked()
            meter.acked(0.01 * (i + 1), partition=0, offset=100 * second + i)
        meter.query(ok=second != 2, latency_s=0.1)
        clock.now += 1.0
    assert ThroughputProbe(meter, window_s=2).measure() == 35.0  # seconds 2 and 3: 30 and 40
    assert QuerySuccessProbe(meter, window_s=4).measure() == 75.0
    lag = LagProbe(meter, lambda: {0: 300})  # every offset below 300 committed: the oldest left was acked at +3 s
    assert lag.measure() == pytest.approx(1.0)
    assert LagProbe(meter, lambda: {0: 10_000}).measure() == 0.0
    assert LagProbe(meter, lambda: None).measure() is None

    def broken() -> dict[int, int]:
        raise RuntimeError("broker down")

    assert LagProbe(meter, broken).measure() is None, "a probe that cannot measure says so; it never raises"
    rows = meter.rows()
    assert [r["acked"] for r in rows] == [10, 20, 30, 40] and rows[1]["ack_p99_s"] == pytest.approx(0.1981)
    assert {p.name for p in standard_probes(meter, lambda: {})} == {"throughput", "p99", "lag", "query_success",
                                                                      "query_p99"}  # fmt: skip
