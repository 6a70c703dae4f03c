"""k2.explore: seeded random fault schedules over the real pipeline, checked, and shrunk to a regression test.

The library under `k2 chaos explore` and `k2 chaos shrink`:

    from k2.explore import Budget, Nemesis, explore, shrink, stack_inventory, write_regression_test

    schedule = Nemesis(stack_inventory(["writer-1", "writer-2"]), intensity="high").schedule(seed=7, duration_s=120)
    result = explore(stack, schedule, abort_on=["lag>30s for 20s"], report_dir=Path("explore-reports"))
    if result.verdict.outcome.info.failure:
        found = shrink(schedule, result.signature, lambda s: explore(stack, s).signature, budget=Budget(runs=20))
        write_regression_test(Path("test_found.py"), found.minimal, found="...", reason="...", shrunk="...",
                              signature=result.signature)

One idea per module: `kinds` (the catalogue as the nemesis sees it), `planned` and `schedule` (the schedule as
validated data), `nemesis` (drawing one from a seed), `pipeline` (the workload), `meter`, `probes` and `rules`
(the steady state and abort rules), `run` (a watched run: heal, drain, check), `verdict` (its outcome class),
`explorer` (a schedule's faults on time, reports before and after), `shrink`, `regression` (the pytest file),
`report`/`html`/`timeline` (the reports), `live` (the terminal), `cli`, `pytest_plugin` (`explore_pipeline`).
"""

from __future__ import annotations

from k2.explore.errors import AbortRuleError, ExploreError, ScheduleError, ShrinkError
from k2.explore.explorer import ExploreResult, explore
from k2.explore.inventory import stack_inventory
from k2.explore.kinds import Inventory
from k2.explore.nemesis import INTENSITIES, Nemesis
from k2.explore.planned import PlannedFault
from k2.explore.probes import Probe, Sample, standard_probes
from k2.explore.regression import regression_test, write_regression_test
from k2.explore.report import load_report, load_schedule
from k2.explore.rules import STEADY_STATE, Rule, Watch, parse_rule
from k2.explore.run import Aborted, ExploreRun, Progress
from k2.explore.schedule import Schedule, Workload
from k2.explore.shrink import Budget, ShrinkResult, shrink
from k2.explore.verdict import Verdict

__all__ = [
    "INTENSITIES",
    "STEADY_STATE",
    "AbortRuleError",
    "Aborted",
    "Budget",
    "ExploreError",
    "ExploreResult",
    "ExploreRun",
    "Inventory",
    "Nemesis",
    "PlannedFault",
    "Probe",
    "Progress",
    "Rule",
    "Sample",
    "Schedule",
    "ScheduleError",
    "ShrinkError",
    "ShrinkResult",
    "Verdict",
    "Watch",
    "Workload",
    "explore",
    "load_report",
    "load_schedule",
    "parse_rule",
    "regression_test",
    "shrink",
    "stack_inventory",
    "standard_probes",
    "write_regression_test",
]
