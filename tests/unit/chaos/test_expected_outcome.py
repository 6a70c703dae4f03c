"""A scenario's expected outcome (`@pytest.mark.chaos_expect`): an expected FAILED_GRACEFULLY is a success for
pytest, for the reports and for `k2 chaos run`'s exit status; any outcome the scenario did not expect is a
failure for all of them. Run with pytester and the installed plugins; no services needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.unit.chaos.pytester_fakes import FAKE_STACK_CONFTEST

from k2.chaos.outcome import Outcome, parse_expected
from k2.chaos.report import RunReport, ScenarioResult, load_json, to_junit

pytest_plugins = ["pytester"]


def scenarios(path: Path) -> dict[str, dict[str, Any]]:
    report = json.loads((path / "reports" / "report.json").read_text())
    return {s["name"]: s for s in report["scenarios"]}


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makeconftest(FAKE_STACK_CONFTEST)
    pytester.makepyfile(source)
    return pytester.runpytest("--chaos-report-dir=reports", "-p", "no:cacheprovider", *args)


def test_expected_failed_gracefully_is_a_success_everywhere(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest
        from k2.platform.errors import StorageUnavailable

        @pytest.mark.chaos
        @pytest.mark.chaos_expect("failed_gracefully")
        def test_query_during_outage():
            raise StorageUnavailable("s3 did not answer within 5s")

        @pytest.mark.chaos
        def test_plain_pass():
            pass
        """,
        "-v",
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*test_query_during_outage FAILED GRACEFULLY*", "*1 passed, 1 failed gracefully*"])
    found = scenarios(pytester.path)
    assert found["test_query_during_outage"]["outcome"] == "failed_gracefully"
    assert found["test_query_during_outage"]["expected"] == ["failed_gracefully"]
    assert found["test_query_during_outage"]["as_expected"] is True
    assert found["test_plain_pass"]["as_expected"] is True
    assert load_json(pytester.path / "reports" / "report.json").failed is False
    junit = (pytester.path / "reports" / "junit.xml").read_text()
    assert "<failure" not in junit and "FAILED GRACEFULLY" in junit


def test_an_outcome_the_scenario_did_not_expect_fails_the_run(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest
        from k2.platform.errors import StorageUnavailable

        @pytest.mark.chaos
        @pytest.mark.chaos_expect("failed_gracefully")
        def test_expected_to_raise_but_passed():
            pass  # the platform did not notice the outage

        @pytest.mark.chaos
        def test_raised_where_it_should_have_coped():
            raise StorageUnavailable("s3 did not answer")

        @pytest.mark.chaos
        @pytest.mark.chaos_expect("failed_gracefully")
        def test_expected_typed_error_got_a_crash():
            raise KeyError("untyped")
        """,
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*expected FAILED GRACEFULLY, got PASS*"])
    found = scenarios(pytester.path)
    assert {n: (s["outcome"], s["as_expected"]) for n, s in found.items()} == {
        "test_expected_to_raise_but_passed": ("pass", False),
        "test_raised_where_it_should_have_coped": ("failed_gracefully", False),
        "test_expected_typed_error_got_a_crash": ("crash", False),
    }
    report = load_json(pytester.path / "reports" / "report.json")
    assert report.failed
    assert to_junit(report).getroot().get("failures") == "3"


def test_a_failing_cleanup_is_a_crash_not_a_pass(pytester: pytest.Pytester) -> None:
    run(
        pytester,
        """
        import pytest

        @pytest.fixture
        def writer():
            yield
            raise RuntimeError("writer thread died while stopping")

        @pytest.mark.chaos
        def test_body_passes(writer):
            pass
        """,
    )
    found = scenarios(pytester.path)
    assert list(found) == ["test_body_passes"]  # recorded once
    assert found["test_body_passes"]["outcome"] == "crash"
    assert "cleaning up" in found["test_body_passes"]["reason"]


def test_a_scenario_that_cannot_start_is_one_crash(pytester: pytest.Pytester) -> None:
    run(
        pytester,
        """
        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("setup broke")

        @pytest.mark.chaos
        def test_setup_fails(broken):
            pass
        """,
    )
    report = json.loads((pytester.path / "reports" / "report.json").read_text())
    assert [(s["name"], s["outcome"]) for s in report["scenarios"]] == [("test_setup_fails", "crash")]  # once
    assert "could not start: RuntimeError: setup broke" in report["scenarios"][0]["reason"]


def test_a_stack_that_cannot_come_up_is_a_crash_of_each_scenario(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        FAKE_STACK_CONFTEST
        + """
@pytest.fixture(scope="session")
def k2_stack():
    raise RuntimeError("kafka did not become healthy within 30s")
"""
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.chaos
        def test_one():
            pass
        """
    )
    pytester.runpytest("--chaos-report-dir=reports", "-p", "no:cacheprovider")
    report = json.loads((pytester.path / "reports" / "report.json").read_text())
    assert [(s["name"], s["outcome"]) for s in report["scenarios"]] == [("test_one", "crash")]
    assert report["failed"] is True


def test_a_skipped_scenario_is_not_judged(pytester: pytest.Pytester) -> None:
    run(
        pytester,
        """
        import pytest

        @pytest.mark.chaos
        def test_skips_itself():
            pytest.skip("needs docker")

        @pytest.mark.chaos
        def test_runs():
            pass
        """,
    )
    assert {n: s["outcome"] for n, s in scenarios(pytester.path).items()} == {"test_runs": "pass"}


@pytest.mark.parametrize("bad", ['"crash"', '"data_loss"', '"pased"', ""])
def test_an_expectation_that_is_not_allowed_is_refused_before_anything_runs(
    pytester: pytest.Pytester, bad: str
) -> None:
    result = run(
        pytester,
        f"""
        import pytest

        @pytest.mark.chaos
        @pytest.mark.chaos_expect({bad})
        def test_x():
            raise AssertionError("never runs")
        """,
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_x*chaos_expect*"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_parse_expected() -> None:
    assert parse_expected(["failed_gracefully", "PASS", "pass"]) == (Outcome.FAILED_GRACEFULLY, Outcome.PASS)
    assert parse_expected(["failed gracefully"]) == (Outcome.FAILED_GRACEFULLY,)
    for bad in (["hang"], [3], []):
        with pytest.raises(ValueError, match="failed_gracefully"):
            parse_expected(bad)


def test_old_reports_without_expectations_read_as_expecting_pass() -> None:
    result = ScenarioResult(name="x", outcome=Outcome.PASS)
    data = result.to_dict()
    del data["expected"]
    again = ScenarioResult.from_dict(data)
    assert again.expected == ["pass"] and again.as_expected
    assert not RunReport(seed=1, started_at=0.0, scenarios=[again]).failed
