"""The pytest plugin as a user meets it: markers registered, fixtures named as in the seed, the seed's
dry run, and a scenario's outcome class and reports — run with pytester, no services needed."""

from __future__ import annotations

import json

import pytest
from tests.unit.chaos.pytester_fakes import FAKE_STACK_CONFTEST

pytest_plugins = ["pytester"]


def test_markers_are_registered_so_strict_markers_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.chaos
        @pytest.mark.chaos_kafka
        @pytest.mark.chaos_storage
        @pytest.mark.slow
        @pytest.mark.chaos_expect("pass")
        def test_marked():
            pass
        """
    )
    result = pytester.runpytest("--strict-markers", "-m", "chaos", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_collect_only_is_the_seeds_dry_run_and_touches_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.chaos
        def test_uses_seed_fixtures(chaos_kafka_failure, chaos_minio_failure, chaos_network_partition,
                                    chaos_kafka_resource_limit, chaos_kafka_latency,
                                    chaos_schema_registry_failure, producer_v2, sample_trade):
            raise AssertionError("never runs in a dry run")
        """
    )
    result = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*test_uses_seed_fixtures*", "*1 test collected*"])


def test_fault_fixtures_validate_before_touching_anything(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from k2.chaos.errors import InvalidFault
        from k2.chaos.faults import service_failure

        def test_invalid():
            with pytest.raises(InvalidFault, match="unknown mode"):
                service_failure("kafka", duration_seconds=5, mode="explode")
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_failing_scenario_is_classified_and_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.chaos
        def test_crashes(chaos_ledger):
            chaos_ledger.invoke("a", group="X", seq=1)
            chaos_ledger.ack("a", partition=0, offset=0)
            raise RuntimeError("unexpected")

        @pytest.mark.chaos
        def test_loses_data(chaos_ledger, chaos_check):
            chaos_ledger.invoke("b", group="X", seq=1)
            chaos_ledger.ack("b", partition=0, offset=0)
            chaos_check([], sources=["kafka:t"])
        """
    )
    pytester.makeconftest(FAKE_STACK_CONFTEST)
    result = pytester.runpytest("--chaos-seed", "5", "--chaos-report-dir", "reports", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    report = json.loads((pytester.path / "reports" / "report.json").read_text())
    outcomes = {s["name"]: s["outcome"] for s in report["scenarios"]}
    assert outcomes == {"test_crashes": "crash", "test_loses_data": "data_loss"}
    assert report["seed"] == 5
    assert (pytester.path / "reports" / "junit.xml").exists()
    assert "<svg" in (pytester.path / "reports" / "report.html").read_text()
    result.stdout.fnmatch_lines(["*DATA*LOSS*"])


def test_the_last_scenario_is_not_charged_the_run_s_stack_shutdown(pytester: pytest.Pytester) -> None:
    """pytest stops the session's stack inside the last scenario's teardown; that scenario's time ends with its
    own cleanup, before the stack's shutdown starts."""
    pytester.makeconftest(
        FAKE_STACK_CONFTEST
        + """
import time

@pytest.fixture(scope="session")
def k2_stack():
    yield FakeStack()
    with open("stack-down-started", "w") as out:
        out.write(repr(time.time()))
"""
    )
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.chaos

        def test_first():
            pass

        def test_last():
            pass
        """
    )
    result = pytester.runpytest("--chaos-report-dir=reports", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    down_started = float((pytester.path / "stack-down-started").read_text())
    report = json.loads((pytester.path / "reports" / "report.json").read_text())
    finished = {s["name"]: s["finished_at"] for s in report["scenarios"]}
    assert finished["test_last"] <= down_started, (finished, down_started)


def _four_scenarios_over(pytester: pytest.Pytester, stack: str) -> pytest.RunResult:
    """Four chaos scenarios run over the stack class `stack` defines (its `up()` notes each heal in `heals`)."""
    pytester.makeconftest(
        FAKE_STACK_CONFTEST
        + stack
        + """
@pytest.fixture(scope="session")
def k2_stack():
    return Stack()
"""
    )
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.chaos

        def test_one():
            pass

        def test_two():
            pass

        def test_three():
            pass

        def test_four():
            pass
        """
    )
    return pytester.runpytest("--chaos-report-dir=reports", "-p", "no:cacheprovider")


def test_a_stack_that_fails_to_heal_twice_in_a_row_is_not_tried_again(pytester: pytest.Pytester) -> None:
    """Each heal of a broken stack waits out its services' start timeout; after two scenarios in a row met
    one, the rest CRASH at once, naming the first error, instead of paying that wait each."""
    result = _four_scenarios_over(
        pytester,
        """
class Stack:  # a fake: broken for good
    def up(self):
        with open("heals", "a") as out:
            out.write("x")
        raise RuntimeError("kafka-store did not become healthy within 60s\\nlast lines of its log: ...")
""",
    )
    result.assert_outcomes(errors=4)
    assert (pytester.path / "heals").read_text() == "xx"
    report = json.loads((pytester.path / "reports" / "report.json").read_text())
    scenarios = {s["name"]: s for s in report["scenarios"]}
    assert {name: s["outcome"] for name, s in scenarios.items()} == dict.fromkeys(
        ["test_one", "test_two", "test_three", "test_four"], "crash"
    )
    for name in ("test_three", "test_four"):
        error = scenarios[name]["error"]
        assert "test_one, test_two" in error and "kafka-store did not become healthy within 60s" in error, error


def test_a_heal_that_succeeds_resets_the_count(pytester: pytest.Pytester) -> None:
    """Only failures in a row count: a stack that heals between two failures is tried before every scenario."""
    result = _four_scenarios_over(
        pytester,
        """
class Stack:  # a fake: fails every other heal
    calls = 0

    def up(self):
        Stack.calls += 1
        with open("heals", "a") as out:
            out.write("x")
        if Stack.calls % 2:
            raise RuntimeError("s3 did not become healthy within 60s")
""",
    )
    result.assert_outcomes(passed=2, errors=2)
    assert (pytester.path / "heals").read_text() == "xxxx"
