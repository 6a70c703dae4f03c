"""One seed replays the run: the scenario's draws, its workload and its trade ids come from the run's seed,
and report.json's `fault_schedule` holds every decision that shaped a fault and nothing measured, so two runs
with the same seed have the same schedule. Through the installed plugins with pytester; the fault records are
planted (no services)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.unit.chaos.pytester_fakes import FAKE_STACK_CONFTEST

from k2.chaos.ledger import Ledger
from k2.chaos.outcome import Outcome
from k2.chaos.report import RunReport, ScenarioResult
from k2.chaos.report.schedule import fault_schedule
from k2.chaos.seeds import Draws
from k2.chaos.session import FaultRecord

pytest_plugins = ["pytester"]

SCENARIO = """
import time
import pytest
from k2.chaos.session import FaultRecord

@pytest.mark.chaos
class TestSeeded:
    def test_draws_shape_a_fault(self, chaos_draws, chaos_session, chaos_ledger, trade_factory, pytestconfig):
        baseline = chaos_draws.randint("baseline_trades", 5, 50)
        pause_s = chaos_draws.uniform("pause_s", 2.0, 4.0)
        trades = [trade_factory() for _ in range(baseline)]
        for t in trades:
            chaos_ledger.invoke(t["trade_id"], group=t["symbol"], seq=t["sequence_number"])
        now = time.time()  # the planted fault was "injected" after the baseline; its measurements vary
        chaos_session.records.append(FaultRecord(
            "service_failure", "kafka", {}, pause_s, "j-" + str(now), now, now + pause_s,
            {"frozen_after_s": now % 1, "decisions": {"spared": 2}}, {"probe_ok_after_s": now % 1}, None, "pause"))
        out = pytestconfig.getoption("--chaos-report-dir")
        out.mkdir(parents=True, exist_ok=True)
        (out / "trades.txt").write_text(repr([(t["trade_id"], str(t["price"]), t["side"]) for t in trades]))
"""


def _run_once(pytester: pytest.Pytester, seed: int, out: str) -> tuple[dict[str, Any], str]:
    result = pytester.runpytest(f"--chaos-seed={seed}", f"--chaos-report-dir={out}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / out / "report.json").read_text())
    return report, (pytester.path / out / "trades.txt").read_text()


def test_the_same_seed_gives_the_same_fault_schedule_and_workload(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_STACK_CONFTEST)
    pytester.makepyfile(test_seeded=SCENARIO)
    first, first_trades = _run_once(pytester, 7, "a")
    second, second_trades = _run_once(pytester, 7, "b")
    other, other_trades = _run_once(pytester, 8, "c")

    assert first["fault_schedule"] == second["fault_schedule"]
    assert first_trades == second_trades  # trade ids, prices, sides: the workload replays too
    assert first["scenarios"][0]["faults"][0]["effect"] != second["scenarios"][0]["faults"][0]["effect"]  # measured

    (entry,) = first["fault_schedule"]["scenarios"]
    assert entry["scenario"] == "test_seeded::TestSeeded::test_draws_shape_a_fault"
    key = "faults:test_seeded::TestSeeded::test_draws_shape_a_fault"
    replayed = Draws(7, key)
    assert entry["decisions"] == {
        "baseline_trades": replayed.randint("baseline_trades", 5, 50),
        "pause_s": replayed.uniform("pause_s", 2.0, 4.0),
    }
    (fault,) = entry["faults"]
    assert fault == {
        "index": 0, "kind": "service_failure", "primitive": "pause", "target": "kafka", "params": {},
        "duration_s": entry["decisions"]["pause_s"], "after_invoked": entry["decisions"]["baseline_trades"],
        "decisions": {"spared": 2},
    }  # fmt: skip
    assert first["fault_schedule"]["seed"] == 7
    assert other["fault_schedule"]["scenarios"][0]["decisions"] != entry["decisions"]
    assert other_trades != first_trades


def test_schedule_holds_decisions_not_measurements() -> None:
    ledger = Ledger("s")
    for i in range(3):
        ledger.invoke(f"k{i}", group="g", seq=i, t=100.0 + i)
    record = FaultRecord("latency", "kafka", {"toxic": "latency", "attributes": {"latency": 90}}, 2.0,
                         "j", 101.5, 103.5, {"rtt_s": 0.09}, {"decisions": {"toxic_on": 3, "spared": 1}},
                         None, "shape")  # fmt: skip
    result = ScenarioResult.build("t", Outcome.PASS, ledger=ledger, faults=[record], key="m::t", decisions={"x": 1})
    assert result.faults[0]["after_invoked"] == 2  # k0 and k1 were started before the injection at 101.5
    schedule = fault_schedule(RunReport(seed=3, started_at=0.0, scenarios=[result]))
    assert schedule == {
        "seed": 3,
        "scenarios": [{
            "scenario": "m::t", "decisions": {"x": 1},
            "faults": [{"index": 0, "kind": "latency", "primitive": "shape", "target": "kafka",
                        "params": {"toxic": "latency", "attributes": {"latency": 90}}, "duration_s": 2.0,
                        "after_invoked": 2, "decisions": {"toxic_on": 3, "spared": 1}}],
        }],
    }  # fmt: skip


def test_schedule_survives_a_report_round_trip(tmp_path: Path) -> None:
    from k2.chaos.report import load_json, write_json

    result = ScenarioResult("t", Outcome.PASS, key="m::t", decisions={"pause_s": 2.5})
    run = RunReport(seed=9, started_at=0.0, scenarios=[result])
    again = load_json(write_json(run, tmp_path / "r.json"))
    assert fault_schedule(again) == fault_schedule(run)


def test_schedule_is_the_same_whatever_order_the_scenarios_ran_in() -> None:
    """Two shards start their scenarios in turn, so a split run's report lists them in another order."""
    first, second = (
        ScenarioResult(name=n, key=f"suite::{n}", outcome=Outcome.PASS, decisions={"pause_s": 2.0}) for n in "ab"
    )
    assert fault_schedule(RunReport(seed=3, started_at=0.0, scenarios=[second, first])) == fault_schedule(
        RunReport(seed=3, started_at=0.0, scenarios=[first, second])
    )
