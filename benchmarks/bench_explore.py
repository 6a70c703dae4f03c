"""`k2 chaos explore` against the planted bugs: how long until each is found, and what shrinking it costs.

For every planted bug (k2.platform.planted), five campaigns start from five fixed seeds; a campaign runs
explore (the whole fault catalogue, intensity high) with seed s, s+1, ... until the run's outcome is the bug's
(or `--max-runs` runs pass): its time to find is the wall time of all its runs. Then the first failing run of
each bug is shrunk: runs and wall time to the minimal schedule, and how many faults are left. Every run is on
one embedded stack (the stack's start is not counted).

    .venv/bin/python -m benchmarks.bench_explore                       # -> results/explore.json
    .venv/bin/python -m benchmarks.bench_explore --bug query-without-timeout --seeds 1 --max-runs 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import fresh_dir, write
from k2.explore.explorer import explore
from k2.explore.inventory import stack_inventory
from k2.explore.nemesis import Nemesis
from k2.explore.schedule import Schedule, Workload
from k2.explore.shrink import Budget, shrink
from k2.explore.writers import default_writers
from k2.platform.planted import BUGS, CONTEXT_ENV, ENV

EXPECTED = {
    "writer-commits-before-iceberg": "data_loss:lost",
    "producer-retries-without-idempotence": "data_loss:duplicated",
    "query-without-timeout": "hang:query",
}
START_SEEDS = (101, 202, 303, 404, 505)


def schedule_for(seed: int, bug: str | None, duration_s: float, writer_names: list[str]) -> Schedule:
    nemesis = Nemesis(stack_inventory(writer_names), intensity="high", max_concurrent=2, writers=writer_names)
    workload = Workload(rate=200, query_timeout_s=1.5, planted=(bug,) if bug else ())
    return nemesis.schedule(seed, duration_s, warmup_s=3.0, workload=workload)


def campaign(stack: Any, bug: str, start: int, max_runs: int, duration_s: float, reports: Path) -> dict[str, Any]:
    factory, writer_names = default_writers()
    began = time.monotonic()
    runs: list[dict[str, Any]] = []
    for seed in range(start, start + max_runs):
        schedule = schedule_for(seed, bug, duration_s, writer_names)
        t0 = time.monotonic()
        result = explore(stack, schedule, report_dir=reports / f"{bug}-{seed}", writers=factory,
                         drain_timeout_s=30.0)  # fmt: skip
        runs.append({"seed": seed, "signature": result.signature, "faults": len(schedule.faults),
                     "wall_s": round(time.monotonic() - t0, 1), "report": str(result.paths.get("json"))})  # fmt: skip
        print(f"  {bug} seed {seed}: {result.signature} ({runs[-1]['wall_s']} s)", flush=True)
        if result.signature == EXPECTED[bug]:
            return {"start": start, "found": True, "runs": runs, "time_to_find_s": round(time.monotonic() - began, 1)}
    return {"start": start, "found": False, "runs": runs, "time_to_find_s": None}


def shrink_found(stack: Any, report: str, bug: str, budget: int) -> dict[str, Any]:
    from k2.explore.report import load_schedule

    factory, _ = default_writers()
    schedule = load_schedule(Path(report))
    reports = Path(tempfile.mkdtemp(prefix="k2-bench-shrink-"))
    count = 0

    def trial(candidate: Schedule) -> str:
        nonlocal count
        count += 1
        return explore(stack, candidate, report_dir=reports / f"run-{count:03d}", writers=factory,
                       drain_timeout_s=30.0).signature  # fmt: skip

    result = shrink(schedule, EXPECTED[bug], trial, budget=Budget(runs=budget))
    return {"bug": bug, "reproduced": result.reproduced, "runs": result.runs, "wall_s": round(result.wall_s, 1),
            "faults_before": len(schedule.faults), "faults_after": len(result.minimal.faults),
            "minimal": [f.describe() for f in result.minimal.faults], "exhausted": result.exhausted}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bug", choices=list(EXPECTED), action="append", default=None)
    parser.add_argument("--seeds", type=int, default=len(START_SEEDS), help="campaigns per bug (at most 5)")
    parser.add_argument("--max-runs", type=int, default=4, help="runs per campaign before giving up")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per explore run")
    parser.add_argument("--shrink-budget", type=int, default=12)
    parser.add_argument("--no-shrink", action="store_true")
    args = parser.parse_args()
    bugs = args.bug or list(EXPECTED)
    os.environ[ENV] = ",".join(BUGS)  # this benchmark is a test context: it plants the bugs on purpose
    os.environ[CONTEXT_ENV] = "bench_explore"
    reports = Path(tempfile.mkdtemp(prefix="k2-bench-explore-"))
    results: dict[str, Any] = {"duration_s": args.duration, "max_runs": args.max_runs, "bugs": {}}
    from k2.stack import LocalStack

    with fresh_dir() as data_dir:
        stack = LocalStack(data_dir)
        stack.up()
        try:
            for bug in bugs:
                found = [campaign(stack, bug, s, args.max_runs, args.duration, reports)
                         for s in START_SEEDS[: args.seeds]]  # fmt: skip
                times = [c["time_to_find_s"] for c in found if c["found"]]
                entry: dict[str, Any] = {"expected": EXPECTED[bug], "campaigns": found,
                                         "found": f"{len(times)}/{len(found)}"}  # fmt: skip
                if times:
                    entry.update(median_s=statistics.median(times), max_s=max(times))
                    first = next(c for c in found if c["found"])["runs"][-1]["report"]
                    if not args.no_shrink:
                        entry["shrink"] = shrink_found(stack, first, bug, args.shrink_budget)
                results["bugs"][bug] = entry
                print(f"{bug}: found {entry['found']}, median {entry.get('median_s')} s, max {entry.get('max_s')} s; "
                      f"shrink {entry.get('shrink')}", flush=True)  # fmt: skip
        finally:
            stack.down()
    print(write("explore", results))


if __name__ == "__main__":
    main()
