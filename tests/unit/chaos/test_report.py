"""Reports: recovery time, and writers that produce valid JSON, well-formed JUnit and an offline HTML page."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from html import escape
from pathlib import Path

import pytest
from rich.console import Console

from k2.chaos.checker import Observed, check
from k2.chaos.ledger import Ledger
from k2.chaos.outcome import Outcome, classify_with_reason
from k2.chaos.report import (
    RunReport,
    ScenarioResult,
    fault_recoveries,
    load_json,
    print_summary,
    recovery_time,
    render_html,
    write_reports,
)
from k2.chaos.report.terminal import format_recovery
from k2.chaos.session import FaultRecord

T0 = 1_700_000_000.0


def _fault(start: float, end: float | None, kind: str = "service_failure", target: str = "kafka") -> FaultRecord:
    return FaultRecord(
        kind,
        target,
        {"mode": "pause"},
        5.0,
        "j1",
        T0 + start,
        None if end is None else T0 + end,
        {"paused": True, "probe_failed_after_s": 0.03},
        {"probe_ok_after_s": 0.4},
    )


def _scenario(
    name: str, *, lose: bool = False, error: BaseException | None = None, hang: bool = False,
    expected: tuple[str, ...] = ("pass",),
) -> ScenarioResult:  # fmt: skip
    ledger = Ledger(name)
    observed = []
    for i in range(40):  # 4 per second for 10 s; nothing acknowledged during the fault (3 s .. 5 s)
        t = T0 + i / 4
        ledger.invoke(f"{name}-{i}", group="AAPL", seq=i, t=t)
        ack_t = T0 + 5.5 if 3 <= i / 4 < 5.5 else t + 0.01
        ledger.ack(f"{name}-{i}", partition=0, offset=i, t=ack_t)
        if not (lose and i == 7):
            observed.append(Observed(f"{name}-{i}", "AAPL", i, "trades", i))
    result = check(ledger, observed, name=name, sources=["trades"], ordered=["trades"])
    outcome, reason = classify_with_reason(error is None, error, hang, result, (ValueError,))
    return ScenarioResult.build(
        name,
        outcome,
        expected=list(expected),
        ledger=ledger,
        faults=[_fault(3, 5)],
        check=result,
        error=error,
        reason=reason,
        description="Pause Kafka for 2 s.\nEverything must arrive.",
        suite="test_kafka_chaos",
        nodeid=f"tests/chaos/test_kafka_chaos.py::{name}",
        started_at=T0 - 1,
        finished_at=T0 + 11,
        stack_dump="Thread 1:\n  File x.py, line 1 in flush\x1b[0m" if hang else None,
    )


@pytest.fixture
def run() -> RunReport:
    return RunReport(
        seed=42,
        started_at=T0 - 2,
        finished_at=T0 + 40,
        backend="local",
        versions={"kafka": "tansu 0.5", "postgres": "18.6"},
        scenarios=[
            _scenario("test_pause_ok"),
            _scenario(
                "test_graceful", error=ValueError("kafka unavailable; remedy: restart"), expected=("failed_gracefully",)
            ),
            _scenario("test_hang <&>", error=TimeoutError("flush"), hang=True),
            _scenario("test_lossy", lose=True),
        ],
    )


def test_recovery_time() -> None:
    acks = [1.0, 2.0, 7.5, 9.0]
    assert recovery_time(acks, 5.0) == 2.5
    assert recovery_time(acks, 7.5) == 0.0  # an ack at the restore instant counts
    assert recovery_time(acks, 9.5) is None  # nothing acknowledged after the restore
    assert recovery_time(acks, None) is None  # never restored
    ledger = Ledger("r")
    ledger.invoke("a", group="g", seq=1, t=T0)
    ledger.ack("a", partition=0, offset=0, t=T0 + 6.25)
    assert fault_recoveries(ledger, [_fault(1, 5), _fault(1, None), _fault(6.5, 7)]) == [1.25, None, None]


def test_scenario_build(run: RunReport) -> None:
    ok, graceful, hang, lossy = run.scenarios
    assert ok.outcome is Outcome.PASS and ok.recovered is True
    assert ok.recovery_s == pytest.approx(0.5)  # restored at +5, buffered records acked at +5.5
    assert ok.faults[0]["recovery_s"] == pytest.approx(0.5) and ok.faults[0]["effect"]["paused"] is True
    assert ok.acked == 40 and ok.lost == 0 and ok.series[0]["t"] == int(T0)
    assert graceful.outcome is Outcome.FAILED_GRACEFULLY and graceful.error.startswith("ValueError: kafka")
    assert hang.outcome is Outcome.HANG
    assert lossy.outcome is Outcome.DATA_LOSS and lossy.lost == 1
    assert run.failed and run.outcome is Outcome.DATA_LOSS


def test_recovery_is_judged_only_where_traffic_met_the_restore() -> None:
    """`never` means operations were in flight at the restore (or started after it) and none was acknowledged;
    a scenario that sent nothing across the restore has no recovery to show ("-"), not a failed one."""
    quiet = ScenarioResult.build("quiet", Outcome.PASS, ledger=Ledger(), faults=[_fault(1, 2)])
    assert quiet.recovered is None and quiet.faults[0]["traffic_after_restore"] is False
    finished_before = Ledger("before")
    finished_before.invoke("a", group="g", seq=1, t=T0)
    finished_before.ack("a", partition=0, offset=0, t=T0 + 0.5)
    assert ScenarioResult.build("b", Outcome.PASS, ledger=finished_before, faults=[_fault(1, 2)]).recovered is None
    stuck = Ledger("stuck")
    stuck.invoke("a", group="g", seq=1, t=T0 + 1.5)  # sent during the fault, never acknowledged
    result = ScenarioResult.build("stuck", Outcome.PASS, ledger=stuck, faults=[_fault(1, 2)])
    assert result.recovered is False and result.recovery_s is None
    assert format_recovery(result) == "never" and format_recovery(ScenarioResult.build("q", Outcome.PASS)) == "-"


def test_json_round_trip(run: RunReport, tmp_path: Path) -> None:
    paths = write_reports(run, tmp_path / "out")
    assert set(paths) == {"json", "junit", "html"} and all(p.exists() for p in paths.values())
    data = json.loads(paths["json"].read_text())
    assert data["seed"] == 42 and data["failed"] is True
    assert data["counts"] == {"pass": 1, "failed_gracefully": 1, "hang": 1, "crash": 0, "data_loss": 1}
    lossy = data["scenarios"][3]
    assert lossy["outcome"] == "data_loss" and lossy["check"]["lost"][0]["key"] == "test_lossy-7"
    assert lossy["series"] and lossy["faults"][0]["kind"] == "service_failure"
    again = load_json(paths["json"])
    assert [s.outcome for s in again.scenarios] == [s.outcome for s in run.scenarios]
    assert render_html(again)  # a stored report can be re-rendered


def test_junit(run: RunReport, tmp_path: Path) -> None:
    path = write_reports(run, tmp_path)["junit"]
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "4" and root.get("failures") == "2"
    suite = root.find("testsuite")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["seed"] == "42" and props["version.kafka"] == "tansu 0.5"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["test_pause_ok"].find("failure") is None
    graceful = cases["test_graceful"]
    assert graceful.find("failure") is None
    assert "FAILED GRACEFULLY" in (graceful.findtext("system-out") or "")
    hang = cases["test_hang <&>"].find("failure")
    assert hang is not None and hang.get("type") == "hang" and "Thread 1" in (hang.text or "")
    lossy = cases["test_lossy"].find("failure")
    assert lossy is not None and lossy.get("type") == "data_loss"
    assert cases["test_lossy"].get("classname") == "tests.chaos.test_kafka_chaos"


def test_html_is_self_contained(run: RunReport, tmp_path: Path) -> None:
    html = write_reports(run, tmp_path)["html"].read_text()
    for s in run.scenarios:
        assert escape(s.name) in html
    assert "test_hang &lt;&amp;&gt;" in html  # escaped, never raw
    assert html.count("<svg") == 4 and "<polyline" in html and 'class="fault"' in html
    assert "recovered +0.50s" in html
    assert "42" in html and "tansu 0.5" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"url\(|@import|<script|<link", html, re.I)
    assert "http://" not in html and "https://" not in html
    assert "\x1b" not in html  # colour codes from stack dumps are stripped


def test_terminal_summary(run: RunReport) -> None:
    buffer = io.StringIO()
    print_summary(run, Console(file=buffer, width=200, color_system=None))
    text = buffer.getvalue()
    assert "test_pause_ok" in text and "DATA LOSS" in text and "0.50s" in text
    assert "Critical bug - fix data pipeline" in text and "seed 42" in text and "FAILED" in text
    assert "service_failure kafka +4.0s..+6.0s" in text
