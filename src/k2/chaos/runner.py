"""The main job, `k2 chaos run`: the shipped suites through pytest, then the verdict from the report.

Also `k2 chaos halt`: from another terminal, restore every active fault at once and stop the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k2.chaos.errors import ChaosError, RestoreFailed
from k2.chaos.journal import read_journal
from k2.chaos.local.chooser import ENV
from k2.chaos.seeds import new_seed
from k2.chaos.shards import MAX_SHARDS, PORT_SHARE_ENV
from k2.chaos.targets import target_from_description
from k2.chaos.targets.process import proc_stat

SUITES = {
    "kafka": "chaos_kafka",
    "storage": "chaos_storage",
    "consumer": "chaos_consumer",
    "schema": "chaos_schema",
    "api": "chaos_api",
    "clock": "chaos_clock",
    "all": "chaos",
}
SUITE_PACKAGE = "k2.scenarios.suites"
NOT_FAULTS = {"chaos_session", "chaos_ledger", "chaos_check", "chaos_rng", "chaos_seed", "chaos_draws"}


@dataclass(frozen=True)
class RunOptions:
    suite: str = "all"
    seed: int | None = None
    select: str | None = None
    report_dir: Path = Path("chaos-reports")
    data_dir: Path | None = None
    keep_stack: bool = False
    timeout: float = 180.0
    verbose: bool = True
    backend: str = "local"
    project: str | None = None
    cgroup: str | None = None  # K2_CGROUP for the run: how the local backend pauses and limits
    parallel: int | None = None  # stacks running scenarios at once; None: shard_count decides


def pytest_args(options: RunOptions) -> list[str]:
    if options.suite not in SUITES:
        raise ValueError(f"unknown suite {options.suite!r}; use one of {', '.join(SUITES)}")
    # Option values joined with "=": pytest would take a separate existing path as a hint for its rootdir.
    args = ["--pyargs", SUITE_PACKAGE, "-m", SUITES[options.suite], "-p", "no:cacheprovider", "-rN",
            f"--chaos-report-dir={options.report_dir}", f"--chaos-timeout={options.timeout}"]  # fmt: skip
    args += ["-v"] if options.verbose else ["-q"]
    args.append(f"--chaos-backend={options.backend}")
    if options.project:
        args.append(f"--chaos-project={options.project}")
    if options.seed is not None:
        args += ["--chaos-seed", str(options.seed)]
    if options.select:
        args += ["-k", options.select]
    if options.data_dir is not None:
        args.append(f"--chaos-data-dir={options.data_dir}")
    if options.keep_stack:
        args.append("--chaos-keep-stack")
    return args


def shard_count(options: RunOptions) -> int:
    """How many stacks run scenarios at once: `--parallel N` when given; else 2 when every shard can have a
    fresh stack of its own (no --data-dir, --keep or --project: on docker, a project per shard's data dir) on a
    machine with 2 or more CPUs."""
    fresh = options.data_dir is None and not options.keep_stack and not options.project
    if options.parallel is None:
        return 2 if fresh and (os.cpu_count() or 1) >= 2 else 1
    if not 1 <= options.parallel <= MAX_SHARDS:
        raise ChaosError(f"--parallel {options.parallel}: give 1 to {MAX_SHARDS} stacks")
    if options.parallel > 1 and not fresh:
        raise ChaosError(
            f"--parallel {options.parallel} starts a fresh stack per shard, so it cannot be combined with "
            "--data-dir, --keep or --project: drop those, or use --parallel 1"
        )
    return options.parallel


def run(options: RunOptions) -> int:
    """Run the suites; exit status 1 exactly when a scenario ended other than it expects (any HANG, CRASH or
    DATA_LOSS; a PASS where it expects FAILED_GRACEFULLY), 2 on usage errors."""
    import sys

    count = shard_count(options)
    report = options.report_dir / "report.json"
    report.unlink(missing_ok=True)
    # A fresh interpreter, so pytest can rewrite the suites' asserts (k2 is already imported here).
    env = {**os.environ, ENV: options.cgroup} if options.cgroup else None
    if count > 1:
        return _run_shards(options, count, env)
    with _Children() as children:
        children.start([sys.executable, "-m", "pytest", *pytest_args(options)], env=env)
        code = children.wait()[0]
    return _verdict(code, report, options)


def _verdict(code: int, report: Path, options: RunOptions) -> int:
    import pytest

    if code in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR):
        return 2
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print(f"k2 chaos run: no scenario matched suite={options.suite!r} -k {options.select!r}")
        return 2
    if not report.exists():
        print(f"k2 chaos run: no report was written to {report}; the run did not get to any scenario")
        return 1
    from k2.chaos.report import load_json

    return 1 if load_json(report).failed else 0


def _run_shards(options: RunOptions, count: int, env: dict[str, str] | None) -> int:
    """One pytest per shard, each on its own fresh stack, all with the same seed; their progress lines are
    shown as they come (everything else is in the shard's log); then one report of the whole run."""
    import subprocess
    import sys

    import pytest
    from rich.console import Console

    from k2.chaos.report import load_json, merge_runs, print_summary, write_reports

    seed = options.seed if options.seed is not None else new_seed()
    shards_dir = options.report_dir / "shards"
    shards_dir.mkdir(parents=True, exist_ok=True)
    print(f"k2 chaos run: the scenarios split over {count} stacks running at once (--parallel 1: one stack), "
          f"seed {seed}; each shard's whole output: {shards_dir}/shard-N.log", flush=True)  # fmt: skip
    pumps, dirs = [], []
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC  # a planted symlink is refused
    with _Children() as children:
        for shard in range(1, count + 1):
            shard_options = dataclasses.replace(options, seed=seed, report_dir=shards_dir / str(shard), verbose=True)
            (shard_options.report_dir / "report.json").unlink(missing_ok=True)
            fd = os.open(shards_dir / f"shard-{shard}.log", flags, 0o644)
            log = open(fd, "w", encoding="utf-8")  # noqa: SIM115
            argv = [sys.executable, "-m", "pytest", *pytest_args(shard_options), f"--chaos-shard={shard}/{count}"]
            shard_env = {**(env or os.environ), PORT_SHARE_ENV: f"{shard}/{count}"}  # no two stacks race for a port
            proc = children.start(argv, env=shard_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  errors="replace")  # fmt: skip
            pump = threading.Thread(target=_pump, args=(proc, log, f"[{shard}/{count}] "), daemon=True)
            pump.start()
            pumps.append(pump)
            dirs.append(shard_options.report_dir)
        codes = children.wait()
    for pump in pumps:
        pump.join(30)
    ran = [(shard, code) for shard, code in enumerate(codes, 1) if code != pytest.ExitCode.NO_TESTS_COLLECTED]
    if not ran:
        return _verdict(pytest.ExitCode.NO_TESTS_COLLECTED, options.report_dir / "report.json", options)
    missing = [shard for shard, _ in ran if not (dirs[shard - 1] / "report.json").exists()]
    reports = [load_json(dirs[shard - 1] / "report.json") for shard, _ in ran if shard not in missing]
    failed = True
    if reports:
        merged = merge_runs(reports)
        failed = merged.failed
        written = write_reports(merged, options.report_dir)
        print_summary(merged, Console())
        for kind, path in written.items():
            print(f"chaos report ({kind}): {path}")
    for shard in missing:
        tail = (shards_dir / f"shard-{shard}.log").read_text(errors="replace").splitlines()[-15:]
        print(f"k2 chaos run: shard {shard}/{count} wrote no report (pytest exit {codes[shard - 1]}); "
              f"the end of its log:", *tail, sep="\n")  # fmt: skip
    if any(code in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR) for _, code in ran):
        return 2
    return 1 if missing or failed else 0


def _pump(proc: Any, log: Any, prefix: str) -> None:
    """Copy a shard's output to its log (and close it); show its scenario lines (pytest -v's `path::name OUTCOME`)."""
    with log as out:
        for line in proc.stdout:
            out.write(line)
            out.flush()
            if "::" in line and not line.startswith(" "):
                print(prefix + line.rstrip("\n"), flush=True)


class _Children:
    """The runner's pytest processes, started and waited for with SIGTERM passed on to them.

    Ctrl-C reaches the children too (one process group): each restores its faults and writes its report, so
    the runner goes on waiting rather than killing them mid-restore (the journal's watchdog would restore, but
    later). SIGTERM to the runner alone (`k2 chaos halt`, a CI's timeout) is passed on to every child still
    running. The handler is in place from before the first child starts: a SIGTERM in between used to end the
    runner at once and leave its shards running without it; one that comes before a child starts reaches that
    child as soon as it exists. When the runner itself fails while its children run (a later shard that cannot
    start), it halts them and waits for their restores before the error goes on."""

    def __init__(self) -> None:
        self.procs: list[Any] = []
        self._halted = False
        self._previous: Any = None
        self._in_main = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> _Children:
        if self._in_main:
            self._previous = signal.signal(signal.SIGTERM, self._forward)
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        try:
            if kind is not None:  # the runner failed mid-way (a shard that could not start, Ctrl-C): none runs on
                if not issubclass(kind, KeyboardInterrupt):  # Ctrl-C reached them already: not a second signal
                    self._forward(signal.SIGTERM, None)
                self.wait()
        finally:
            if self._in_main:
                signal.signal(signal.SIGTERM, self._previous)

    def _forward(self, signum: int, frame: object) -> None:
        self._halted = True
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def start(self, argv: list[str], **popen: Any) -> Any:
        import subprocess

        proc = subprocess.Popen(argv, **popen)
        self.procs.append(proc)
        if self._halted:  # a halt that came before it existed
            proc.send_signal(signal.SIGTERM)
        return proc

    def wait(self) -> list[int]:
        """Every child's exit status."""
        while True:
            try:
                return [proc.wait() for proc in self.procs]
            except KeyboardInterrupt:
                continue


class _Lister:
    """A pytest plugin that records the collected scenarios instead of running them."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def pytest_collection_finish(self, session: Any) -> None:
        from k2.chaos.pytest_verdict import expected_outcomes

        for item in session.items:
            text = (getattr(getattr(item, "function", None), "__doc__", None) or "").strip()
            doc = [" ".join(text.split("\n\n")[0].split())] if text else []
            faults = sorted(f for f in item.fixturenames if f.startswith("chaos_") and f not in NOT_FAULTS)
            expects = [o.value for o in expected_outcomes(item)]
            self.items.append(
                {"nodeid": item.nodeid, "name": item.name, "faults": faults, "expects": expects,
                 "doc": doc[0] if doc else ""}
            )  # fmt: skip


def dry_run(options: RunOptions) -> list[dict[str, Any]]:
    """The scenarios and the faults each injects, touching nothing (pytest's collection only)."""
    import pytest

    lister = _Lister()
    output = io.StringIO()  # pytest's own listing is noise here; it is shown when collecting fails
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        code = pytest.main([*pytest_args(options), "--collect-only", "-q"], plugins=[lister])
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        tail = "\n".join(output.getvalue().strip().splitlines()[-15:])
        raise ChaosError(f"collecting the scenarios failed (pytest exit {int(code)}); fix what pytest says:\n{tail}")
    return lister.items


def halt(journal: Path) -> list[str]:
    """Restore every fault the journal says is active (idempotent inverses, straight from the
    descriptions, without the runner's lock), then ask the runner(s) to stop with SIGTERM.

    Every entry is tried even when one fails (then RestoreFailed names the failures, after the rest
    are restored and the runners told). A runner is signalled only if its pid still has the kernel
    start time the journal recorded: a recycled pid belongs to someone else and is left alone.
    """
    entries, problems = read_journal(journal)
    restored: list[str] = []
    failures: list[str] = list(problems)
    runners: set[tuple[int, int]] = set()
    for entry in entries.values():
        if not entry.pending:
            continue
        try:
            target = target_from_description(entry.target)
            getattr(target, entry.inverse)()
        except Exception as exc:
            failures.append(f"{entry.summary()}: {type(exc).__name__}: {exc}")
            continue
        restored.append(entry.summary())
        if entry.runner_pid and entry.runner_pid != os.getpid():
            runners.add((entry.runner_pid, entry.runner_starttime))
    for pid, starttime in runners:
        stat = proc_stat(pid)
        if not starttime or stat is None or stat.starttime != starttime:
            continue  # gone, recorded without a start time, or a different process now
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if failures:
        raise RestoreFailed(
            f"halt restored {len(restored)} fault(s) and asked the run to stop, but: {'; '.join(failures)}. "
            f"Fix the cause and run `k2 chaos recover --journal {journal}`"
        )
    return restored
