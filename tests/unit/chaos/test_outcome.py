"""Outcome classes: the seed's table, with DATA_LOSS overriding everything."""

from __future__ import annotations

import pytest

from k2.chaos.checker import CheckResult, Observed, check
from k2.chaos.ledger import Ledger
from k2.chaos.outcome import Outcome, classify, classify_with_reason, is_failure, worst


class PlatformError(Exception):
    """Stands in for a typed platform error."""


GRACEFUL = (PlatformError,)


def _check(*, lose: bool = False, unexpected: bool = False) -> CheckResult:
    ledger = Ledger("t")
    ledger.invoke("a", group="g", seq=1)
    ledger.ack("a", partition=0, offset=0)
    observed = [] if lose else [Observed("a", "g", 1, "topic", 0)]
    if unexpected:
        observed.append(Observed("ghost", "g", 2, "topic", 1))
    return check(ledger, observed, name="t", sources=["topic"])


CLEAN, LOST, CORRUPT = _check(), _check(lose=True), _check(unexpected=True)
BROKE = PlatformError("kafka unavailable after 3 retries; check `k2 stack status`")


@pytest.mark.parametrize(
    ("passed", "error", "timed_out", "result", "expected"),
    [
        (True, None, False, CLEAN, Outcome.PASS),
        (True, None, False, None, Outcome.PASS),
        (False, BROKE, False, CLEAN, Outcome.FAILED_GRACEFULLY),
        (False, BROKE, False, None, Outcome.FAILED_GRACEFULLY),
        (False, PlatformError(""), False, CLEAN, Outcome.CRASH),  # typed but says nothing
        (False, KeyError("x"), False, CLEAN, Outcome.CRASH),
        (False, None, False, CLEAN, Outcome.CRASH),  # failed without an exception (dead process)
        (True, None, False, CORRUPT, Outcome.CRASH),  # data corruption, not loss
        (False, TimeoutError("flush"), True, CLEAN, Outcome.HANG),
        (False, BROKE, True, None, Outcome.HANG),  # a timeout beats a graceful error
        # DATA_LOSS overrides everything
        (True, None, False, LOST, Outcome.DATA_LOSS),
        (False, BROKE, False, LOST, Outcome.DATA_LOSS),
        (False, KeyError("x"), False, LOST, Outcome.DATA_LOSS),
        (False, None, True, LOST, Outcome.DATA_LOSS),
    ],
)
def test_classify(
    passed: bool, error: BaseException | None, timed_out: bool, result: CheckResult | None, expected: Outcome
) -> None:
    assert classify(passed, error, timed_out, result, GRACEFUL) is expected


def test_reasons_name_the_cause() -> None:
    outcome, reason = classify_with_reason(True, None, False, LOST, GRACEFUL)
    assert outcome is Outcome.DATA_LOSS and "1 acknowledged lost" in reason and "a" in reason
    assert "KeyError" in classify_with_reason(False, KeyError("x"), False, None, GRACEFUL)[1]
    assert "unexpected" in classify_with_reason(True, None, False, CORRUPT, GRACEFUL)[1]


def test_failures_severity_and_actions() -> None:
    assert [o for o in Outcome if is_failure(o)] == [Outcome.HANG, Outcome.CRASH, Outcome.DATA_LOSS]
    assert is_failure("data_loss") and not is_failure("failed_gracefully")
    assert Outcome.DATA_LOSS.severity > Outcome.CRASH.severity > Outcome.FAILED_GRACEFULLY.severity
    assert Outcome.PASS.severity == 0
    assert Outcome.HANG.action == "Add timeouts, fix deadlocks"
    assert Outcome.DATA_LOSS.action == "Critical bug - fix data pipeline"
    assert Outcome.FAILED_GRACEFULLY.action == "Failing gracefully - document behavior"
    assert all(o.meaning and o.label for o in Outcome)


def test_worst() -> None:
    assert worst([]) is Outcome.PASS
    assert worst([Outcome.PASS, Outcome.HANG, Outcome.FAILED_GRACEFULLY]) is Outcome.HANG
    assert worst(["hang", "crash"]) is Outcome.CRASH
    assert worst([Outcome.CRASH, Outcome.DATA_LOSS]) is Outcome.DATA_LOSS
