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
