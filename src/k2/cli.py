"""The `k2` command line: `k2 stack ...` and the main job."""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from k2.chaos.errors import ChaosError
from k2.chaos.faults.injection import Terminated
from k2.chaos.local.chooser import POLICIES
from k2.chaos.runner import SUITES
from k2.explore.errors import ExploreError
from k2.stack import BACKENDS, LocalStack, StackError, open_stack
from k2.stack.services.kafka import MAX_BROKERS

console = Console(stderr=True)
out = Console()


class UsageError(Exception):
    """A command-line value that cannot work; printed as one line, exit status 2."""


def _check_args(args: argparse.Namespace) -> None:
    """Refuse values that cannot work before anything is started or saved."""
    data_dir = getattr(args, "data_dir", None)
    if data_dir is not None and data_dir.exists() and not data_dir.is_dir():
        raise UsageError(f"--data-dir {data_dir} is a file, not a directory; pass a directory (it is created)")
    journal = getattr(args, "journal", None)
    if journal is not None and journal.is_dir():
        raise UsageError(f"--journal {journal} is a directory; pass the journal file (DATA_DIR/chaos/journal.jsonl)")
    select = getattr(args, "select", None)
    if select:
        from _pytest.mark.expression import Expression  # the very parser `pytest -k` uses

        try:
            Expression.compile(select)
        except Exception as exc:  # SyntaxError in pytest 8.4+, ParseError before
            raise UsageError(f"-k {select!r} is not a valid selection ({exc}); e.g. -k 'kafka and not slow'") from None


def _stack(args: argparse.Namespace) -> LocalStack:
    fixed: dict[str, int] = {}
    for item in getattr(args, "port", None) or []:
        name, _, value = item.partition("=")
        if not re.fullmatch(r"[0-9]{1,5}", value):  # ASCII digits: str.isdigit() also takes "²"
            raise UsageError(f"--port takes SERVICE=PORT (e.g. kafka=9092), got {item!r}")
        fixed[name] = int(value)
    return open_stack(
        args.data_dir,
        backend=getattr(args, "backend", None),
        project=getattr(args, "project", None),
        brokers=getattr(args, "brokers", None),
        fixed_ports=fixed,
        on_progress=lambda service, message: console.print(f"  [bold]{service:<12}[/] {message}"),
    )


def cmd_up(args: argparse.Namespace) -> int:
    stack = _stack(args)
    where = f", docker project {stack.project}" if getattr(stack, "project", None) else ""
    console.print(f"k2 stack up: {stack.backend} backend, data dir {stack.data_dir}{where}")
    stack.up()
    console.print("[green]all services healthy[/]; `k2 stack env` prints the connection settings")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    stack = _stack(args)
    ended = stack.down(purge=args.purge)
    if not ended:
        console.print("nothing was running")
    for name, how in ended:
        console.print(f"  {name:<12} {how}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    stack = _stack(args)
    rows = stack.status()
    table = Table("service", "state", "pid", "address", "detail")
    colours = {"healthy": "green", "unhealthy": "yellow", "down": "red", "stopped": "dim"}
    for row in rows:
        table.add_row(row.name, f"[{colours[row.state]}]{row.state}[/]", str(row.pid or "-"), row.address, row.detail)
    out.print(table)
    dead = [r for r in rows if r.state == "down"]
    if dead:
        names = ", ".join(f"{r.name} (pid {r.pid})" for r in dead)
        console.print(
            f"[red]stale state:[/] {names} not running. `k2 stack up` restarts it with its data; "
            "`k2 stack logs SERVICE` shows why it stopped; `k2 stack down` clears the state."
        )
    return 0 if all(r.healthy for r in rows) else 1


def cmd_env(args: argparse.Namespace) -> int:
    for key, value in _stack(args).env().items():
        out.print(f"export {key}={shlex.quote(value)}", highlight=False, soft_wrap=True)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    sys.stdout.write(_stack(args).logs(args.service, None if args.lines == 0 else args.lines) + "\n")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    svc = _stack(args).start_service(args.service)
    console.print(f"{args.service} healthy at {svc.advertised}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    how = _stack(args).stop_service(args.service, kill=args.kill)
    console.print(f"{args.service} {how}")
    return 0


def cmd_smoke(args: argparse.Namespace) -> int:
    """The main job until the chaos suites land: up, one round trip per service, summary, down."""
    from k2.stack.roundtrip import all_round_trips

    stack = _stack(args)
    console.print(f"k2 smoke: starting the embedded stack in {stack.data_dir}")
    try:
        stack.up()
        results = all_round_trips(stack.endpoints())
        table = Table("service", "round trip", "seconds", title="K2 embedded stack: round trips")
        for r in results:
            table.add_row(r.service, r.what, f"{r.seconds:.2f}")
        out.print(table)
    finally:
        if not args.keep:
            stack.down()
            console.print("stack stopped (data kept; `k2 stack down --purge` removes it)")
    return 0


def cmd_chaos_recover(args: argparse.Namespace) -> int:
    """Restore every fault a killed runner left applied; idempotent, safe at any time."""
    from k2.chaos.journal import Journal

    path = args.journal or _stack(args).journal_path()
    if not path.exists():
        console.print(f"no chaos journal at {path}: nothing to recover")
        return 0
    with Journal(path, recover=True, lock_timeout=args.wait) as journal:
        for problem in journal.problems:
            console.print(f"k2: {problem}", style="yellow", highlight=False, markup=False, soft_wrap=True)
        pending = journal.pending()
        if not pending:
            console.print(f"journal {path}: no fault pending")
            return 0
        for entry in pending:
            console.print(f"  restoring {entry.summary()}")
        restored = journal.recover()
    console.print(f"[green]restored {len(restored)} fault(s)[/]")
    return 0


def cmd_chaos_run(args: argparse.Namespace) -> int:
    """The main job: the shipped chaos suites on the embedded stack, a summary and reports."""
    from k2.chaos.local.chooser import policy_from_env
    from k2.chaos.runner import RunOptions, dry_run, run

    if args.cgroup is None:
        policy_from_env()  # a bad K2_CGROUP is refused here, not in the middle of the first scenario
    options = RunOptions(
        suite=args.suite, seed=args.seed, select=args.select, report_dir=args.report_dir,
        data_dir=args.data_dir, keep_stack=args.keep, timeout=args.timeout, backend=args.backend or "local",
        project=args.project, cgroup=args.cgroup, parallel=args.parallel,
    )  # fmt: skip
    if args.dry_run:
        _print_dry_run(dry_run(options), args.suite)
        return 0
    return run(options)


def _print_dry_run(items: list[dict[str, Any]], suite: str) -> None:
    """One block per scenario, its name whole on a line of its own (plain text: a parametrize id is not console
    markup), so the list reads at any width and the names can be copied into -k."""
    from k2.chaos.outcome import Outcome

    out.print(Text(f"k2 chaos run --dry-run ({suite}): {len(items)} scenarios", style="bold"))
    for item in items:
        expects = " or ".join(Outcome(o).label for o in item["expects"])
        out.print(Text(item["nodeid"].split("::", 1)[-1], style="bold"), soft_wrap=True)
        out.print(Text(f"    faults: {', '.join(item['faults']) or '-'}; expects: {expects}", style="dim"))
        if item["doc"]:
            out.print(Padding(Text(item["doc"]), (0, 0, 0, 4)))


def cmd_chaos_halt(args: argparse.Namespace) -> int:
    from k2.chaos.runner import halt

    path = args.journal or _stack(args).journal_path()
    if not path.exists():
        console.print(f"no chaos journal at {path}: nothing to halt")
        return 0
    restored = halt(path)
    for line in restored:
        console.print(f"  restored {line}")
    console.print(f"halted: {len(restored)} fault(s) restored, the run was asked to stop")
    return 0


def cmd_chaos_export(args: argparse.Namespace) -> int:
    """Chaos Mesh manifests for a fault-list file, to `kubectl apply` on a cluster."""
    from k2.chaos.kubernetes.export import export_manifests, load_scenario, render_yaml

    manifests = export_manifests(load_scenario(args.scenario))
    text = render_yaml(manifests, args.scenario.name)
    if args.output is None:
        sys.stdout.write(text)  # verbatim: no console markup or wrapping in a manifest
    else:
        args.output.write_text(text, encoding="utf-8")
        kinds = ", ".join(f"{m['kind']} {m['metadata']['name']}" for m in manifests)
        console.print(f"wrote {args.output}: {kinds} (not tested against a live cluster)")
    return 0


def cmd_chaos_inject(args: argparse.Namespace) -> int:
    """One fault, ad hoc: inject, print the effect, hold, restore, print the restore's effect."""
    from k2.chaos.units import parse_duration
    from k2.testing.inject import build_spec, inject_and_hold

    duration = None if args.duration is None else parse_duration(args.duration, what="--for", allow_zero=False)
    spec = build_spec(args.kind, args.service, args.param or [], duration)
    stack = _stack(args)
    stack.state()  # a stack must be running there: refused with the remedy otherwise
    hold = f"for {spec.duration_s:g}s" if spec.duration_s is not None else "until Ctrl-C"
    return inject_and_hold(
        stack,
        spec,
        say=lambda line: _say(out, line),
        on_injected=lambda: _say(console, f"holding {hold} (Ctrl-C restores now)"),
    )


def _say(console: Console, line: str) -> None:
    """A line at once, even into a pipe: `inject` is watched by other programs while it holds."""
    console.print(line, highlight=False, soft_wrap=True, markup=False)
    console.file.flush()


def cmd_chaos_list(args: argparse.Namespace) -> int:
    """The catalogue: fault kinds, their parameters, and which backend supports each."""
    from k2.chaos.faults.listing import catalogue_json, catalogue_tables

    if args.json:
        out.print_json(data=catalogue_json())
        return 0
    for table in catalogue_tables():
        out.print(table)
    return 0


def _broker_count(text: str) -> int:
    if not re.fullmatch(r"[0-9]", text) or not 1 <= int(text) <= MAX_BROKERS:
        raise argparse.ArgumentTypeError(f"takes a whole number from 1 to {MAX_BROKERS}, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="k2", description="K2 chaos testing framework and its platform")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_data_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--data-dir", type=Path, default=None, help="stack data dir (default: K2_DATA_DIR or a "
                       "per-user state dir)")  # fmt: skip
        return p

    def with_backend(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--backend", choices=BACKENDS, default=None, help="where the services run: local processes "
                       "(the default) or docker containers (images from scripts/docker-setup.sh)")  # fmt: skip
        p.add_argument("--project", default=None, help="docker backend: the Compose project name (default: one "
                       "per data dir)")  # fmt: skip
        return p

    stack = sub.add_parser("stack", help="the services the platform runs on").add_subparsers(dest="verb", required=True)
    up = with_data_dir(stack.add_parser("up", help="start every service; returns when all are healthy"))
    up.add_argument("--port", action="append", metavar="SERVICE=PORT", help="listen on a fixed port")
    up.add_argument("--brokers", type=_broker_count, default=None, metavar="N", help="Kafka brokers over the one "
                    f"log store: kafka, kafka-2, ... (1-{MAX_BROKERS}; default 1, or what the stack has)")  # fmt: skip
    with_backend(up)
    up.set_defaults(func=cmd_up)
    down = with_data_dir(stack.add_parser("down", help="stop every service (data kept)"))
    down.add_argument("--purge", action="store_true", help="also delete the data dir")
    down.set_defaults(func=cmd_down)
    with_data_dir(stack.add_parser("status", help="health per service, live-checked")).set_defaults(func=cmd_status)
    with_data_dir(stack.add_parser("env", help="shell exports for clients")).set_defaults(func=cmd_env)
    logs = with_data_dir(stack.add_parser("logs", help="a service's log"))
    logs.add_argument("service")
    logs.add_argument("-n", "--lines", type=int, default=200, help="last N lines (0 = all)")
    logs.set_defaults(func=cmd_logs)
    start = with_data_dir(stack.add_parser("start", help="start one service again with its data"))
    start.add_argument("service")
    start.set_defaults(func=cmd_start)
    stop = with_data_dir(stack.add_parser("stop", help="stop one service"))
    stop.add_argument("service")
    stop.add_argument("--kill", action="store_true", help="SIGKILL instead of a graceful stop")
    stop.set_defaults(func=cmd_stop)

    chaos = sub.add_parser("chaos", help="fault injection").add_subparsers(dest="verb", required=True)
    recover = with_data_dir(chaos.add_parser("recover", help="restore every fault a killed run left applied"))
    recover.add_argument("--journal", type=Path, default=None, help="journal file (default: in the data dir)")
    recover.add_argument("--wait", type=float, default=10.0, help="seconds to wait for a runner holding it")
    recover.set_defaults(func=cmd_chaos_recover)

    crun = with_data_dir(chaos.add_parser("run", help="the main job: run the chaos suites, print and write reports"))
    crun.add_argument("--suite", choices=tuple(SUITES), default="all")
    crun.add_argument("--seed", type=int, default=None, help="replay a run: the seed is printed in every report")
    crun.add_argument("-k", dest="select", default=None, help="select scenarios (pytest -k expression)")
    crun.add_argument("--dry-run", action="store_true", help="list scenarios and their faults; touch nothing")
    crun.add_argument("--report-dir", type=Path, default=Path("chaos-reports"))
    crun.add_argument("--timeout", type=float, default=180.0, help="seconds before a scenario counts as a HANG")
    crun.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    crun.add_argument("--parallel", type=int, default=None, metavar="N",
                      help="run the scenarios on N fresh stacks at once (default: 2 on a machine with 2 or "
                      "more CPUs when no --data-dir, --keep or --project asks for one stack)")  # fmt: skip
    crun.add_argument("--cgroup", choices=POLICIES, default=None, help="local backend: how pause and limits are made "
                      "(auto: cgroup v1, else v2, else signals and rlimits; v2: never v1; none: no cgroup; v1: v1 "
                      "only). Default: K2_CGROUP, else auto")  # fmt: skip
    with_backend(crun)
    crun.set_defaults(func=cmd_chaos_run)
    inject = with_data_dir(chaos.add_parser("inject", help="inject one fault on a running stack, hold, restore"))
    inject.add_argument("kind", help="a fault kind (`k2 chaos list` shows them), e.g. service_failure")
    inject.add_argument("service", help="a service of the stack, e.g. kafka")
    inject.add_argument("--param", action="append", metavar="NAME=VALUE", help="a parameter of the kind")
    inject.add_argument("--for", dest="duration", default=None, help="how long, e.g. 5s or 2m (default: the "
                        "kind's; none: until Ctrl-C)")  # fmt: skip
    with_backend(inject)
    inject.set_defaults(func=cmd_chaos_inject)
    listing = chaos.add_parser("list", help="the fault kinds, their parameters and which backend supports each")
    listing.add_argument("--json", action="store_true", help="as JSON")
    listing.set_defaults(func=cmd_chaos_list)
    chalt = with_data_dir(chaos.add_parser("halt", help="restore every active fault now and stop the run"))
    chalt.add_argument("--journal", type=Path, default=None)
    chalt.set_defaults(func=cmd_chaos_halt)
    export = chaos.add_parser("export", help="Chaos Mesh manifests (a Workflow for several faults) for kubectl apply")
    export.add_argument("--backend", choices=("kubernetes",), default="kubernetes", help="only Chaos Mesh so far")
    export.add_argument("scenario", type=Path, help="fault-list file (YAML or JSON): services' placement and faults")
    export.add_argument("-o", "--output", type=Path, default=None, help="write here instead of to stdout")
    export.set_defaults(func=cmd_chaos_export)
    from k2.explore.cli import add_commands as add_explore_commands

    add_explore_commands(chaos, with_data_dir, with_backend)

    smoke = with_data_dir(sub.add_parser("smoke", help="up, a round trip through each service, summary, down"))
    smoke.add_argument("--keep", action="store_true", help="leave the stack running")
    with_backend(smoke)
    smoke.set_defaults(func=cmd_smoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        _check_args(args)
        return int(args.func(args))
    except (StackError, ChaosError, UsageError, ExploreError) as exc:
        console.print(f"k2: {exc}", style="red", highlight=False, markup=False, soft_wrap=True)
        return 2
    except OSError as exc:  # a path that cannot be used: one line, not a traceback
        console.print(
            f"k2: {exc.strerror or exc}: {exc.filename or ''}",
            style="red",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        return 2
    except KeyboardInterrupt:
        console.print("[red]k2: interrupted[/]")
        return 130
    except Terminated:  # SIGTERM while a fault was held: it was restored on the way out
        console.print("[red]k2: terminated[/]")
        return 143
