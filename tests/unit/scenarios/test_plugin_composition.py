"""K2's pytest plugins as `pip install` registers them (the distribution's `pytest11` entry points, loaded by
pytest itself, no `-p`): a scenario ending in a typed platform error is FAILED_GRACEFULLY, whatever order the
plugins were registered in (#10: it was CRASH, because pluggy calls the later-registered plugin first)."""

from __future__ import annotations

import json

import pytest
from tests.unit.chaos.pytester_fakes import FAKE_STACK_CONFTEST

pytest_plugins = ["pytester"]

SCENARIOS = """
import pytest
from k2.platform.errors import PlatformError, QueryTimeout

@pytest.mark.chaos
def test_platform_error_with_a_message():
    raise PlatformError("the platform noticed the outage")

@pytest.mark.chaos
def test_a_subclass_from_deep_in_the_platform():
    raise QueryTimeout("vwap MSFT did not answer within 5s")

@pytest.mark.chaos
def test_an_untyped_error():
    raise RuntimeError("boom")

def test_k2_plugins_came_from_the_installed_distribution(pytestconfig):
    import k2.chaos.pytest_plugin, k2.scenarios.fixtures

    dists = {dist.project_name for plugin, dist in pytestconfig.pluginmanager.list_plugin_distinfo()}
    assert "k2-chaos" in dists, dists
    assert pytestconfig.pluginmanager.is_registered(k2.chaos.pytest_plugin)
    assert pytestconfig.pluginmanager.is_registered(k2.scenarios.fixtures)
"""


def outcomes(pytester: pytest.Pytester) -> dict[str, str]:
    report = json.loads((pytester.path / "reports" / "report.json").read_text())
    return {s["name"]: s["outcome"] for s in report["scenarios"]}


@pytest.mark.parametrize("runner", ["inprocess", "subprocess"])
def test_typed_platform_error_is_failed_gracefully_with_the_installed_entry_points(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, runner: str
) -> None:
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)  # load entry points, as a user's pytest does
    pytester.makeconftest(FAKE_STACK_CONFTEST)
    pytester.makepyfile(SCENARIOS)
    run = pytester.runpytest if runner == "inprocess" else pytester.runpytest_subprocess
    result = run("--chaos-report-dir=reports", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=3)
    assert outcomes(pytester) == {
        "test_platform_error_with_a_message": "failed_gracefully",
        "test_a_subclass_from_deep_in_the_platform": "failed_gracefully",
        "test_an_untyped_error": "crash",
    }
