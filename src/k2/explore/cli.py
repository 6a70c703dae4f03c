"""`k2 chaos explore` and `k2 chaos shrink`: the second main job, on the library in this package.

Both start a stack (a temporary data dir unless --data-dir; stopped afterwards unless --keep), run, print a
summary and write reports. Exit status: 0 when the outcome is PASS or FAILED_GRACEFULLY (shrink: a minimal
schedule was found), 1 for HANG, CRASH or DATA_LOSS (shrink: nothing reproduced), 2 for bad input, 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from k2.chaos.outcome import Outcome
from k2.chaos.seeds import new_seed
from k2.explore.errors import ExploreError
from k2.explore.schedule import Schedule, Workload

__all__ = ["add_commands"]

console = Console(stderr=True)
out = Console()
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
FAILING = (Outcome.DATA_LOSS, Outcome.CRASH, Outcome.HANG)


def duration(text: str) -> float:
    """Seconds from '600', '90s', '10m', '1h', '500ms' (argparse type)."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; e.g. 90s, 10m, 1h")
    value = float(match[1]) * {"ms": 0.001, "m": 60.0, "h": 3600.0}.get(match[2] or "s", 1.0)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive duration")
    return value


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give a comma-separated list of names")
    return names


# ---- shared: the stack, planted bugs, the command line -------------------------------------------------


@contextmanager
def _stack(args: argparse.Namespace) -> Iterator[Any]:
    from k2.stack import open_stack

    root = None
    data_dir = args.data_dir
    if data_dir is None:
        root = Path(tempfile.mkdtemp(prefix="k2-explore-"))
        data_dir = root / "stack"
    stack = open_stack(
        data_dir,
        backend=args.backend,
        project=args.project,
        on_progress=lambda service, message: console.print(f"  [bold]{service:<15}[/] {message}"),
    )
    console.print(f"stack: {stack.backend} backend, data dir {stack.data_dir}")
    stack.up()
    try:
        yield stack
    finally:
        if not args.keep:
            stack.down(purge=root is not None)
            if root is not None:
                with contextlib.suppress(OSError):  # the temporary root, empty once purged
                    root.rmdir()


def _arm_planted(names: list[str]) -> None:
    """--plant: test-only; refused unless K2_PLANTED_BUGS lists each bug (k2.platform.planted)."""
    from k2.platform.planted import BUGS, CONTEXT_ENV, ENV

    listed = [n.strip() for n in os.environ.get(ENV, "").split(",")]
    for name in names:
        if name not in BUGS:
            raise ExploreError(f"--plant {name}: no such planted bug; they are {', '.join(BUGS)} (test-only)")
        if name not in listed:
            raise ExploreError(f"--plant {name}: refused; planted bugs are for K2's own tests and need {ENV}={name}")
    if names:
        os.environ[CONTEXT_ENV] = "k2-chaos-explore"


def _writers(count: int = 2) -> tuple[Callable[..., Any] | None, list[str]]:
    """The writers' factory and the names of `count` members (faults may target them)."""
    from k2.explore.writers import default_writers

    return default_writers(count)


def _context(args: argparse.Namespace) -> dict[str, Any]:
    from k2.stack import binaries

    return {
        "command": shlex.join(["k2", *sys.argv[1:]]),
        "backend": args.backend or "local",
        "versions": binaries.versions(),
        "replay": f"k2 chaos explore --replay {args.report_dir / 'report.json'}",
    }


# ---- explore -------------------------------------------------------------------------------------------


def _schedule(args: argparse.Namespace, writer_names: list[str]) -> Schedule:
    from k2.explore.inventory import stack_inventory
    from k2.explore.nemesis import Nemesis
    from k2.explore.report import load_schedule

    if args.replay is not None:
        given = [
            f
            for f in ("seed", "duration", "faults", "services", "intensity", "max_concurrent", "plant")
            if getattr(args, f) not in (None, [])
        ]
        if given:
            raise ExploreError(f"--replay runs the report's schedule as it is; drop --{given[0].replace('_', '-')}")
        return load_schedule(args.replay)
    inventory = stack_inventory(writer_names).narrowed(args.services)
    nemesis = Nemesis(
        inventory,
        kinds=args.faults,
        intensity=args.intensity or "med",
        max_concurrent=args.max_concurrent or 2,
        writers=writer_names,
    )
    workload = Workload(
        rate=args.rate, writers=args.writers, query_timeout_s=args.query_timeout, planted=tuple(args.plant or ())
    )
    seed = args.seed if args.seed is not None else new_seed()
    return nemesis.schedule(seed, args.duration or 600.0, warmup_s=args.warmup, workload=workload)


def _print_schedule(schedule: Schedule) -> None:
    table = Table("#", "at", "for", "kind", "service", "parameters", title=schedule.summary())
    for f in schedule.faults:
        params = ", ".join(f"{k}={v}" for k, v in f.params.items() if v is not None)
        table.add_row(str(f.index), f"+{f.at_s:g}s", f"{f.duration_s:g}s", f.kind, f.target, params)
    out.print(table)


def _print_verdict(result: Any, paths: dict[str, Path]) -> None:
    verdict = result.verdict
    if verdict is None:
        console.print("[yellow]interrupted[/]: faults restored; no verdict")
        return
    colour = verdict.outcome.info.colour
    out.print(f"[bold {colour}]{verdict.outcome.label}[/]  {verdict.reason}", highlight=False)
    if verdict.check is not None:
        out.print(f"  {verdict.check.summary(examples=3)}", highlight=False, markup=False)
    if verdict.anomalies:
        from k2.chaos.anomaly import Anomaly

        out.print(
            f"  [yellow]{len(verdict.anomalies)} third-party anomal{'y' if len(verdict.anomalies) == 1 else 'ies'}"
            "[/] beside the outcome (not the platform's doing):",
            highlight=False,
        )
        for anomaly in verdict.anomalies[:5]:
            out.print(f"    {Anomaly.from_dict(anomaly).describe()}", highlight=False, markup=False)
    violations = result.violations
    if violations:
        kinds = sorted({v.rule for v in violations})
        out.print(f"  steady state: {len(violations)} violation(s) of {', '.join(kinds)}", highlight=False)
    for kind, path in paths.items():
        out.print(f"  report ({kind}): {path}", highlight=False)


def _quiet(args: argparse.Namespace) -> None:
    """Faults make the platform log every outage it meets; the report holds what matters (-v shows them)."""
    if not getattr(args, "verbose", False):
        for name in ("k2.platform", "k2.scenarios", "pyiceberg", "k2.chaos.checker"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def cmd_explore(args: argparse.Namespace) -> int:
    from k2.explore.explorer import explore
    from k2.explore.live import LiveView
    from k2.explore.rules import parse_rule

    for rule in args.abort_on:
        parse_rule(rule)
    _quiet(args)
    _arm_planted(args.plant or [])
    factory, writer_names = _writers(args.writers)
    schedule = _schedule(args, writer_names)
    if schedule.workload.planted:
        _arm_planted(list(schedule.workload.planted))
    if args.dry_run:
        _print_schedule(schedule)
        return 0
    console.print(f"k2 chaos explore: {schedule.summary()}; replay with --seed {schedule.seed}")
    with _stack(args) as stack, LiveView(console, f"explore seed {schedule.seed}") as view:
        result = explore(
            stack,
            schedule,
            abort_on=args.abort_on,
            report_dir=args.report_dir,
            on_progress=view.update,
            hang_after_s=args.hang_after,
            drain_timeout_s=args.drain_timeout,
            context=_context(args),
            writers=factory,
        )
    _print_verdict(result, result.paths)
    if result.verdict is None:
        return 130
    if result.verdict.outcome in FAILING:
        out.print(f"  shrink it: k2 chaos shrink {result.paths.get('json')}", highlight=False)
        return 1
    return 0


# ---- shrink --------------------------------------------------------------------------------------------


def cmd_shrink(args: argparse.Namespace) -> int:
    import json

    from k2.explore.explorer import explore
    from k2.explore.files import prepare_dir, write_atomic
    from k2.explore.regression import write_regression_test
    from k2.explore.report import load_report
    from k2.explore.shrink import Attempt, Budget, shrink

    doc, schedule = load_report(args.report)
    _quiet(args)
    verdict = doc.get("verdict") or {}
    outcome, target = verdict.get("outcome"), verdict.get("signature")
    if outcome not in {o.value for o in FAILING} or not isinstance(target, str) or len(target) > 64:
        raise ExploreError(
            f"{args.report}: its outcome is {outcome or 'missing'}; shrink takes a run whose outcome "
            "is DATA_LOSS, CRASH or HANG"
        )
    _arm_planted(list(schedule.workload.planted))
    budget = Budget(runs=args.budget, seconds=args.budget_time)
    report_dir = prepare_dir(args.report_dir)
    output = args.output or report_dir / f"test_explore_seed_{schedule.seed}_{re.sub(r'[^a-z0-9]+', '_', target)}.py"
    factory, _ = _writers()
    console.print(f"k2 chaos shrink: {schedule.summary()}; reproducing {target} within {budget.runs} runs")
    runs = 0

    def trial(candidate: Schedule) -> str:
        nonlocal runs
        runs += 1
        console.print(
            f"  run {runs}: {len(candidate.faults)} fault(s) {list(candidate.indexes)}, {candidate.duration_s:g}s ...",
            highlight=False,
        )
        result = explore(
            stack,
            candidate,
            report_dir=report_dir / f"run-{runs:03d}",
            context=_context(args),
            hang_after_s=args.hang_after,
            drain_timeout_s=args.drain_timeout,
            writers=factory,
        )
        return result.signature

    def shown(attempt: Attempt) -> None:
        mark = "[green]reproduced[/]" if attempt.reproduced else f"[dim]{attempt.signature}[/]"
        console.print(f"    {attempt.step}: {mark} in {attempt.wall_s:.0f}s", highlight=False)

    with _stack(args) as stack:
        result = shrink(schedule, target, trial, budget=budget, attempts=args.attempts, on_attempt=shown)
    write_atomic(report_dir, "shrink.json", json.dumps(result.to_dict(), indent=2) + "\n")
    if not result.reproduced:
        out.print(
            f"[yellow]not reproduced[/] in {result.runs} run(s): the failure depends on timing this replay "
            f"did not hit; try --attempts 3 (shrink.json in {report_dir})",
            highlight=False,
        )
        return 1
    minimal = result.minimal
    about = {
        "found": str(doc.get("command") or f"k2 chaos explore --seed {schedule.seed}"),
        "reason": str(verdict.get("reason", "")),
        "signature": target,
        "shrunk": f"{len(schedule.faults)} -> {len(minimal.faults)} fault(s) in {result.runs} runs, "
        f"{result.wall_s:.0f} s",
    }
    path = write_regression_test(output, minimal, **about)
    _print_schedule(minimal)
    out.print(
        f"[bold]minimal[/]: {len(minimal.faults)} fault(s), {minimal.duration_s:g}s run "
        f"({result.runs} runs, {result.wall_s:.0f}s{', budget exhausted' if result.exhausted else ''})"
    )
    out.print(f"  regression test: {path}", highlight=False)
    out.print(f"  shrink report: {report_dir / 'shrink.json'}", highlight=False)
    return 0


# ---- the parsers ---------------------------------------------------------------------------------------


def add_commands(chaos: Any, with_data_dir: Callable[[Any], Any], with_backend: Callable[[Any], Any]) -> None:
    """Register `explore` and `shrink` under `k2 chaos` (the caller's helpers add --data-dir and --backend)."""
    from k2.explore.kinds import KINDS
    from k2.explore.nemesis import INTENSITIES

    def common(p: argparse.ArgumentParser) -> None:
        with_data_dir(p)
        with_backend(p)
        p.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
        p.add_argument(
            "--hang-after",
            type=duration,
            default=None,
            metavar="DURATION",
            help="a query still running this long is a HANG (default: 3 x the query timeout)",
        )
        p.add_argument(
            "--drain-timeout",
            type=duration,
            default=60.0,
            metavar="DURATION",
            help="how long the writers get to catch up at the end (default 60s)",
        )

    ex = chaos.add_parser("explore", help="seeded random fault schedules over the real pipeline, checked at the end")
    ex.add_argument("--duration", type=duration, default=None, help="how long the run lasts (default 10m)")
    ex.add_argument("--seed", type=int, default=None, help="the seed that draws the schedule (printed, replayable)")
    ex.add_argument(
        "--faults",
        type=_names,
        default=None,
        metavar="KINDS",
        help=f"comma-separated kinds to draw from (default all: {', '.join(KINDS)})",
    )
    ex.add_argument("--services", type=_names, default=None, metavar="NAMES", help="only fault these services")
    ex.add_argument("--intensity", choices=list(INTENSITIES), default=None, help="how often faults come (default med)")
    ex.add_argument("--max-concurrent", type=int, default=None, metavar="K", help="faults at once (default 2)")
    ex.add_argument(
        "--abort-on",
        action="append",
        default=[],
        metavar="RULE",
        help="stop the run when a rule holds, e.g. 'lag>30s for 20s' (repeatable)",
    )
    ex.add_argument("--report-dir", type=Path, default=Path("explore-reports"))
    ex.add_argument("--replay", type=Path, default=None, metavar="REPORT", help="run a report's schedule again")
    ex.add_argument("--dry-run", action="store_true", help="print the schedule the seed draws; touch nothing")
    ex.add_argument("--rate", type=int, default=200, help="trades a second the producer sends (default 200)")
    ex.add_argument("--writers", type=int, default=2, help="Iceberg writer processes in the group (default 2)")
    ex.add_argument("--warmup", type=duration, default=5.0, help="calm start that sets the baseline (default 5s)")
    ex.add_argument("--query-timeout", type=duration, default=3.0, help="the query engine's deadline (default 3s)")
    ex.add_argument(
        "--plant",
        action="append",
        default=None,
        metavar="BUG",
        help="TEST-ONLY: arm a planted bug (k2.platform.planted); needs K2_PLANTED_BUGS=BUG as well",
    )
    common(ex)
    ex.set_defaults(func=cmd_explore)

    sh = chaos.add_parser("shrink", help="reduce a failing explore run to a minimal schedule and a pytest file")
    sh.add_argument("report", type=Path, help="the report.json of a run whose outcome is DATA_LOSS, CRASH or HANG")
    sh.add_argument("--budget", type=int, default=40, help="at most this many runs (default 40)")
    sh.add_argument("--budget-time", type=duration, default=3600.0, help="and at most this long (default 1h)")
    sh.add_argument("--attempts", type=int, default=1, help="runs per candidate before giving up on it")
    sh.add_argument("--output", type=Path, default=None, help="the regression test file (default: in the report dir)")
    sh.add_argument("--report-dir", type=Path, default=Path("explore-reports/shrink"))
    common(sh)
    sh.set_defaults(func=cmd_shrink)
