"""The main job, `k2 chaos run`: the shipped suites through pytest, then the verdict from the report.

Also `k2 chaos halt`: from another terminal, restore every active fault at once and stop the run.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k2.chaos.errors import ChaosError, RestoreFailed
from k2.chaos.journal import read_journal
from k2.chaos.local.chooser import ENV
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


def run(options: RunOptions) -> int:
    """Run the suites; exit status 1 exactly when a scenario ended other than it expects (any HANG, CRASH or
    DATA_LOSS; a PASS where it expects FAILED_GRACEFULLY), 2 on usage errors."""
    import subprocess
    import sys

    import pytest

    report = options.report_dir / "report.json"
    report.unlink(missing_ok=True)
    # A fresh interpreter, so pytest can rewrite the suites' asserts (k2 is already imported here).
    env = {**os.environ, ENV: options.cgroup} if options.cgroup else None
    code = subprocess.call([sys.executable, "-m", "pytest", *pytest_args(options)], env=env)
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
