"""Each chaos scenario's verdict under pytest: its outcome class (k2.chaos.outcome), judged against the outcome
the scenario expects; then the run's reports.

A scenario expects PASS unless it declares otherwise: `@pytest.mark.chaos_expect("failed_gracefully")` is the
seed's "Test fails with expected exception: platform detected failure" — the scenario ends with a typed error of
the platform, and that is its documented behaviour. An expected outcome is a success for pytest (shown as
"failed gracefully", counted apart from "passed") and for `k2 chaos run`'s exit status; any other outcome is a
failure for both, PASS included when the platform was expected to raise.

Which exceptions are the platform's typed errors is asked of the plugins (`pytest_chaos_graceful_errors`) per
scenario, once every plugin and conftest is registered: it never depends on the order plugins were loaded in.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable
from typing import Any

import pytest

from k2.chaos.checker import CheckResult
from k2.chaos.faults import Terminated
from k2.chaos.outcome import Outcome, classify_with_reason, describe_error, parse_expected
from k2.chaos.pytest_plugin import RUN, SUITE_MARKERS, ScenarioState, scenario_key

EXPECT_MARKER = "chaos_expect"
EXPECTED = pytest.StashKey[tuple[Outcome, ...]]()
GRACEFUL = pytest.StashKey[tuple[type[BaseException], ...]]()


class VerdictHooks:
    """What the verdict asks the other plugins."""

    @pytest.hookspec
    def pytest_chaos_graceful_errors(self, config: pytest.Config) -> Iterable[type[BaseException]]:  # type: ignore[empty-body]
        """Exception types meaning the system under test detected the failure and said so: a scenario that
        ends with one (with a message) is FAILED_GRACEFULLY, not CRASH. The answers of all plugins and of the
        conftests above a scenario are combined."""


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(VerdictHooks)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{EXPECT_MARKER}(*outcomes): the outcome this chaos scenario expects, 'pass' (the default) or "
        "'failed_gracefully' (it ends with a typed platform error); any other outcome fails the run",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each scenario's expectation and graceful error types, checked before anything runs (also in a dry run)."""
    for item in items:
        marker = item.get_closest_marker(EXPECT_MARKER)
        args = marker.args if marker is not None else (Outcome.PASS.value,)
        try:
            item.stash[EXPECTED] = parse_expected(args)
        except ValueError as exc:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{EXPECT_MARKER}{args!r}: {exc}") from None
        item.stash[GRACEFUL] = _graceful_errors(item)


def _graceful_errors(item: pytest.Item) -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    for answer in item.ihook.pytest_chaos_graceful_errors(config=item.config):
        for kind in answer or ():
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise pytest.UsageError(
                    f"pytest_chaos_graceful_errors answered {kind!r} for {item.nodeid}: return exception "
                    "classes, e.g. (MyPlatformError,)"
                )
            found.append(kind)
    return tuple(found)


def expected_outcomes(item: pytest.Item) -> tuple[Outcome, ...]:
    return item.stash.get(EXPECTED, (Outcome.PASS,))


def _state(item: pytest.Item) -> ScenarioState | None:
    if item.get_closest_marker("chaos") is None:
        return None
    return item.config.stash[RUN].scenarios.get(item.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    state = _state(item)
    if state is None:
        return report
    error = call.excinfo.value if call.excinfo is not None else None
    if report.when == "call":
        _judge(item, state, report, error)
    elif report.failed and error is not None and (state.verdict is None or not state.verdict[0].info.failure):
        # a setup that failed: the scenario never ran; a cleanup that failed: the platform did not come out whole
        what = "the scenario could not start" if report.when == "setup" else "cleaning up after the scenario failed"
        state.error, state.verdict = error, (Outcome.CRASH, f"{what}: {describe_error(error)}")
    if report.when == "teardown" and state.verdict is not None:  # a skipped scenario did not run: not judged
        _record(item, state)
    return report


def _judge(item: pytest.Item, state: ScenarioState, report: pytest.TestReport, error: BaseException | None) -> None:
    """Classify the scenario as its body ended, and make pytest's report say the same as K2's."""
    if report.skipped and not hasattr(report, "wasxfail"):
        return
    if report.passed:
        error = None
    if isinstance(error, Terminated):
        item.session.shouldstop = "halted by SIGTERM (k2 chaos halt)"
    check = _merge(state.checks)
    graceful = item.stash.get(GRACEFUL, ())
    outcome, reason = classify_with_reason(report.passed, error, state.timed_out, check, graceful)
    state.verdict, state.error = (outcome, reason), error
    expected = expected_outcomes(item)
    report.user_properties.append(("chaos_outcome", outcome.value))
    if outcome in expected and report.failed:
        report.outcome = "passed"
        report.longrepr = None
        report.sections.append(("chaos verdict", f"{outcome.label}, as expected: {reason}"))
        report.k2_expected_failure = True  # type: ignore[attr-defined]
    elif outcome not in expected and report.passed:
        report.outcome = "failed"
        wanted = " or ".join(o.label for o in expected)
        report.longrepr = f"{item.nodeid}: expected {wanted}, got {outcome.label}: {reason}"


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Any:
    if report.when == "call" and getattr(report, "k2_expected_failure", False):
        return "failed gracefully", "g", ("FAILED GRACEFULLY", {"cyan": True})
    return None


def _merge(checks: list[CheckResult]) -> CheckResult | None:
    """One result for the scenario: the worst (data loss first, then any violation)."""
    if not checks:
        return None
    return max(checks, key=lambda c: (c.data_loss, not c.clean))


def _record(item: pytest.Item, state: ScenarioState) -> None:
    from k2.chaos.report import ScenarioResult

    assert state.verdict is not None
    outcome, reason = state.verdict
    suite = next((m for m in SUITE_MARKERS if item.get_closest_marker(m)), "chaos")
    doc = getattr(getattr(item, "function", None), "__doc__", None) or ""
    item.config.stash[RUN].results.append(
        ScenarioResult.build(
            item.name,
            outcome,
            expected=[o.value for o in expected_outcomes(item)],
            ledger=state.ledger,
            faults=state.faults,
            check=_merge(state.checks),
            error=state.error,
            nodeid=item.nodeid,
            key=scenario_key(item),
            decisions=dict(state.draws.made) if state.draws is not None else {},
            description=" ".join(doc.split()),
            suite=suite,
            reason=reason,
            started_at=state.started_at,
            finished_at=state.finished_at or time.time(),
            stack_dump=state.stack_dump,
        )
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(RUN, None)
    if run is None or not run.results:
        return
    from k2.chaos.report import RunReport, write_reports

    run.report = RunReport(
        seed=run.seed, started_at=run.started_at, finished_at=time.time(), backend=run.backend,
        versions=run.versions, scenarios=run.results,
    )  # fmt: skip
    run.written = write_reports(run.report, run.report_dir)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = config.stash.get(RUN, None)
    if run is None or run.report is None:
        return
    from rich.console import Console

    from k2.chaos.report import print_summary

    console = Console(file=terminalreporter._tw._file, width=terminalreporter._tw.fullwidth)
    print_summary(run.report, console)
    for kind, path in run.written.items():
        terminalreporter.write_line(f"chaos report ({kind}): {path}")
