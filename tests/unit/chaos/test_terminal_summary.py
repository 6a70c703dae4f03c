"""The verdict is readable where it is read: the terminal table in an 80-column terminal and in CI logs
(scenario names whole, wrapped only between words; parametrize ids shown, never eaten as console markup),
and the full node id in report.json, junit.xml and report.html."""

from __future__ import annotations

import io
import itertools
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console
from tests.unit.chaos.pytester_fakes import FAKE_STACK_CONFTEST

from k2.chaos.outcome import Outcome
from k2.chaos.report import RunReport, ScenarioResult, print_summary, write_reports
from k2.chaos.report.terminal import wrap_name

pytest_plugins = ["pytester"]

T0 = 1_700_000_000.0
MODULE = "src/k2/scenarios/suites/test_storage_chaos.py"
NAMES = [
    "test_malformed_trade_is_rejected_to_dead_letters[invalid_decimal_precision]",
    "test_malformed_trade_is_rejected_to_dead_letters[missing_required_field]",
    "test_malformed_trade_is_rejected_to_dead_letters[wrong_asset_class]",
    "test_query_fails_typed_when_storage_unavailable",
    "test_consumer_poll_timeouts_and_rebalance_under_faults_with_a_name_longer_than_eighty_columns_x",
]


def _run() -> RunReport:
    scenarios = []
    for i, name in enumerate(NAMES):
        graceful = "storage_unavailable" in name
        fault = {"kind": "service_failure", "target": "s3", "injected_at": T0 + 1, "restored_at": T0 + 4.5}
        scenarios.append(
            ScenarioResult(
                name=name,
                outcome=Outcome.FAILED_GRACEFULLY if graceful else Outcome.PASS,
                expected=["failed_gracefully"] if graceful else ["pass"],
                nodeid=f"{MODULE}::TestDataCorruption::{name}",
                started_at=T0,
                duration_s=12.5 + i,
                counts={"acknowledged": 12345},
                faults=[fault] if graceful else [],
                reason="typed error with a message: StorageUnavailable: s3: down",
            )
        )
    return RunReport(seed=7, started_at=T0, finished_at=T0 + 60, backend="local", scenarios=scenarios)


def _render(run: RunReport, width: int) -> list[str]:
    buffer = io.StringIO()
    print_summary(run, Console(file=buffer, width=width, color_system=None))
    return buffer.getvalue().splitlines()


def _name_fragments(lines: list[str], name: str) -> list[str]:
    """The name as the table shows it: the first column's text on consecutive lines, from where it starts."""
    header = next(line for line in lines if line.startswith("Scenario"))
    width = header.index("Outcome") - 1
    for start in range(len(lines)):
        if not lines[start][:width].strip():
            continue
        fragments: list[str] = []
        for line in lines[start:]:
            fragments.append(line[:width].rstrip())
            joined = "".join(fragments)
            if not name.startswith(joined) or joined == name:
                break
        if "".join(fragments) == name:
            return fragments
    raise AssertionError(f"{name} is not in the table's first column:\n" + "\n".join(lines))


@pytest.mark.parametrize("width", [80, 100, 160])
def test_names_are_whole_and_wrapped_between_words_at_any_width(width: int) -> None:
    lines = _render(_run(), width)
    assert all(len(line.rstrip()) <= width for line in lines), [line for line in lines if len(line.rstrip()) > width]
    for name in NAMES:
        fragments = _name_fragments(lines, name)
        assert "".join(fragments) == name, fragments
        for fragment, following in itertools.pairwise(fragments):
            assert fragment[-1] in "_-./:" or following.startswith("["), (fragment, following)
    text = "\n".join(lines)
    for param in ("[invalid_decimal_precision]", "[missing_required_field]", "[wrong_asset_class]"):
        assert param in text  # a parametrize id is text, not console markup to be swallowed


def test_at_80_columns_the_outcome_and_the_verdict_are_there() -> None:
    text = "\n".join(_render(_run(), 80))
    assert "FAILED\nGRACEFULLY" in re.sub(r" *\n *", "\n", text) or "FAILED GRACEFULLY" in text
    assert "(expected)" in text and "seed 7" in text and "replay: k2 chaos run --seed 7" in text
    assert "service_failure s3 +1.0s..+4.5s" in text


def test_wrap_name() -> None:
    assert wrap_name("test_a_b[x_y]", 7) == ["test_a_", "b[x_y]"]
    assert wrap_name("test_a_b[x_y]", 6) == ["test_", "a_b", "[x_y]"]  # the id on a line of its own
    assert wrap_name("test_a_b[x_yy]", 5) == ["test_", "a_b", "[x_", "yy]"]  # too long for a line: split too
    assert wrap_name("short", 40) == ["short"]
    assert wrap_name("abcdefghij", 4) == [
        "abcd",
        "efgh",
        "ij",
    ]  # one word wider than the column: cut, nothing else fits
    assert "".join(wrap_name(NAMES[0], 20)) == NAMES[0]


def test_full_node_id_in_json_junit_and_html(tmp_path: Path) -> None:
    paths = write_reports(_run(), tmp_path)
    nodeid = f"{MODULE}::TestDataCorruption::{NAMES[0]}"
    assert json.loads(paths["json"].read_text())["scenarios"][0]["nodeid"] == nodeid
    case = next(ET.parse(paths["junit"]).getroot().iter("testcase"))
    assert case.get("classname") == "src.k2.scenarios.suites.test_storage_chaos.TestDataCorruption"
    assert case.get("name") == NAMES[0]
    assert {p.get("name"): p.get("value") for p in case.iter("property")}["nodeid"] == nodeid
    assert nodeid in paths["html"].read_text()


def test_pytests_own_summary_fits_an_80_column_terminal(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    pytester.makeconftest(FAKE_STACK_CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.chaos
        @pytest.mark.parametrize("case", ["invalid_decimal_precision", "missing_required_field"])
        def test_malformed_trade_is_rejected_to_dead_letters(case):
            pass
        """
    )
    result = pytester.runpytest("--chaos-report-dir=reports", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    table = result.stdout.lines[
        result.stdout.lines.index(next(x for x in result.stdout.lines if x.startswith("K2 chaos"))) :
    ]
    assert all(len(line) <= 80 for line in table), table
    text = "\n".join(table)
    assert "[invalid_decimal_precision]" in text and "[missing_required_field]" in text
