"""The seed's outcome table end to end, through the installed plugins: one run with a scenario of each class.
PASS and FAILED_GRACEFULLY are what the shipped scenarios produce on the real stack; HANG, CRASH and DATA_LOSS
come from test-only scenarios that plant a bug (README, "Interpreting results"). No services: a fake stack."""

from __future__ import annotations

import json
import time

import pytest
from tests.unit.chaos.pytester_fakes import FAKE_STACK_CONFTEST

pytest_plugins = ["pytester"]

PLANTED = """
import threading
import pytest
from k2.platform.errors import QueryTimeout

pytestmark = pytest.mark.chaos

def test_pass(chaos_ledger, chaos_check):
    chaos_ledger.invoke("t-1", group="AAPL", seq=1)
    chaos_ledger.ack("t-1", partition=0, offset=0)
    chaos_check([_seen("t-1")], sources=["trades"])

@pytest.mark.chaos_expect("failed_gracefully")
def test_failed_gracefully():
    raise QueryTimeout("VWAP of MSFT did not answer within 10s")

def test_hang_planted_deadlock():
    threading.Event().wait()  # planted bug: waits for an acknowledgement that never comes, with no deadline

def test_crash_planted_untyped_error():
    {}["trade_id"]  # planted bug: an unhandled KeyError instead of a typed error

def test_data_loss_planted_lost_ack(chaos_ledger, chaos_check):
    chaos_ledger.invoke("t-2", group="AAPL", seq=1)
    chaos_ledger.ack("t-2", partition=0, offset=0)  # planted bug: acknowledged, never written
    chaos_check([], sources=["trades"])

def _seen(key):
    from k2.chaos.checker import Observed
    return Observed(key, "AAPL", 1, "trades", 0)
"""


def test_each_outcome_class_from_one_run(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_STACK_CONFTEST)
    pytester.makepyfile(test_outcome_table=PLANTED)
    started = time.monotonic()
    result = pytester.runpytest("--chaos-report-dir=reports", "--chaos-timeout=2", "-p", "no:cacheprovider")
    assert time.monotonic() - started < 60  # the planted deadlock ended at its timeout, not never
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = json.loads((pytester.path / "reports" / "report.json").read_text())
    found = {s["name"]: s for s in report["scenarios"]}
    assert {name: s["outcome"] for name, s in found.items()} == {
        "test_pass": "pass",
        "test_failed_gracefully": "failed_gracefully",
        "test_hang_planted_deadlock": "hang",
        "test_crash_planted_untyped_error": "crash",
        "test_data_loss_planted_lost_ack": "data_loss",
    }
    assert "test_hang_planted_deadlock" in found["test_hang_planted_deadlock"]["stack_dump"]
    assert [name for name, s in found.items() if not s["as_expected"]] == [
        "test_hang_planted_deadlock", "test_crash_planted_untyped_error", "test_data_loss_planted_lost_ack",
    ]  # fmt: skip
    assert report["failed"] is True
    result.stdout.fnmatch_lines(["*FAILED 5 scenarios: 1 pass, 1 failed gracefully, 1 hang, 1 crash, 1 data loss*"])
