"""`k2 chaos explore --dry-run` and the commands' refusals, without a stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from k2.cli import main
from k2.explore.report import report_dict
from k2.explore.schedule import Schedule

from .helpers import kill, schedule_of


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_dry_run_prints_the_same_schedule_for_the_same_seed(capsys: pytest.CaptureFixture[str]) -> None:
    first = run(capsys, "chaos", "explore", "--seed", "42", "--duration", "3m", "--dry-run")
    again = run(capsys, "chaos", "explore", "--seed", "42", "--duration", "3m", "--dry-run")
    other = run(capsys, "chaos", "explore", "--seed", "43", "--duration", "3m", "--dry-run")
    assert first[0] == 0 and first == again and first[1] != other[1]
    assert "seed 42:" in first[1]


def test_replay_dry_run_shows_the_reports_schedule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schedule = schedule_of(kill(0, "kafka", 4.5, 2.0), kill(1, "s3", 9.0, 1.0), seed=77)
    report = tmp_path / "report.json"
    report.write_text(json.dumps(report_dict(schedule, None, status="scheduled", context={})))
    code, out, _ = run(capsys, "chaos", "explore", "--replay", str(report), "--dry-run")
    assert code == 0 and "seed 77: 2 fault(s)" in out and "+4.5s" in out
    code, _, err = run(capsys, "chaos", "explore", "--replay", str(report), "--seed", "3", "--dry-run")
    assert code == 2 and "drop --seed" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--duration", "ten"], "is not a duration"),
        (["--faults", "meteor"], "unknown kind(s) meteor"),
        (["--services", "mainframe"], "mainframe not in this stack"),
        (["--abort-on", "lag>30% for 2s"], "lag is a time"),
        (["--intensity", "extreme"], "invalid choice"),
        (["--plant", "query-without-timeout"], "refused; planted bugs are for K2's own tests"),
        (["--writers", "0"], "workload.writers=0"),
    ],
)
def test_bad_explore_options_are_one_line_and_status_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("K2_PLANTED_BUGS", raising=False)
    try:
        code = main(["chaos", "explore", "--dry-run", *argv])
    except SystemExit as exc:  # argparse's own refusals (a wrong type or choice) exit 2 as well
        code = exc.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_shrink_refuses_a_run_that_did_not_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = report_dict(schedule_of(kill(0, "kafka", 4, 2)), None, status="finished", context={})
    doc["verdict"] = {"outcome": "pass", "signature": "pass"}
    report = tmp_path / "report.json"
    report.write_text(json.dumps(doc))
    code, _, err = run(capsys, "chaos", "shrink", str(report))
    assert code == 2 and "its outcome is pass" in err
    report.write_text("{not json")
    code, _, err = run(capsys, "chaos", "shrink", str(report))
    assert code == 2 and "not valid JSON" in err


def test_schedule_files_are_reports_too(tmp_path: Path) -> None:
    bare = tmp_path / "schedule.json"
    bare.write_text(Schedule.to_json(schedule_of(kill(0, "kafka", 4, 2))))
    from k2.explore.report import load_schedule

    assert load_schedule(bare).indexes == (0,)
