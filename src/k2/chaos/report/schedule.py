"""The fault schedule of a run (report.json's `fault_schedule`): every decision that shaped a fault and
nothing measured, so two runs with the same seed and the same scenarios have the same schedule.

Per scenario (by its stable key, in run order): the named draws it made from the seed (`chaos_draws`), and
per fault in injection order: kind, primitive (the mode: pause, kill, isolate, shape...), target, parameters,
planned duration, and when it came in the workload's terms (`after_invoked`: operations the scenario had
started by then). Wall-clock times and measured effects stay in each scenario's `faults`: they vary.

A fault that makes random decisions of its own (e.g. the fault proxy's per-connection toxicity rolls) reports
them in its effect or restore effect under the key `decisions` (a dict of JSON values, such as counts); they
appear here as the fault's `decisions`, so a replay can be compared decision by decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from k2.chaos.report.model import RunReport, ScenarioResult

__all__ = ["fault_schedule", "scenario_schedule"]

_PLANNED = ("kind", "primitive", "target", "params", "duration_s", "after_invoked")


def _fault_decisions(fault: Mapping[str, Any]) -> dict[str, Any]:
    decisions: dict[str, Any] = {}
    for side in ("effect", "restore_effect"):
        found = (fault.get(side) or {}).get("decisions")
        if isinstance(found, Mapping):
            decisions.update(found)
    return decisions


def scenario_schedule(s: ScenarioResult) -> dict[str, Any]:
    faults = [
        {"index": i, **{name: fault.get(name) for name in _PLANNED}, "decisions": _fault_decisions(fault)}
        for i, fault in enumerate(s.faults)
    ]
    return {"scenario": s.key or s.nodeid or s.name, "decisions": dict(s.decisions), "faults": faults}


def fault_schedule(run: RunReport) -> dict[str, Any]:
    """What the seed decided, per scenario in name order: the same whatever order they ran in (one stack, or
    shards starting them in turn)."""
    schedules = [scenario_schedule(s) for s in run.scenarios]
    return {"seed": run.seed, "scenarios": sorted(schedules, key=lambda s: str(s["scenario"]))}
