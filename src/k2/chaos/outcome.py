"""Outcome of a chaos scenario, following the seed's "Interpreting Results" and its "Action Items" table.

Why a class of its own: "the test failed" says nothing. A scenario that fails with a typed, explained error
is the platform doing its job; one that hangs, crashes or silently loses data is a bug, and each kind of
bug has a different fix. Silent data loss overrides everything: a test that "passed" while losing
acknowledged writes is the worst result there is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from k2.chaos.checker import CheckResult

__all__ = [
    "EXPECTABLE",
    "Outcome",
    "OutcomeInfo",
    "classify",
    "classify_with_reason",
    "describe_error",
    "is_failure",
    "parse_expected",
    "worst",
]


@dataclass(frozen=True)
class OutcomeInfo:
    label: str
    meaning: str
    action: str
    severity: int  # 0 best .. 4 worst
    failure: bool
    colour: str  # for the terminal and HTML reports


class Outcome(StrEnum):
    PASS = "pass"
    FAILED_GRACEFULLY = "failed_gracefully"
    HANG = "hang"
    CRASH = "crash"
    DATA_LOSS = "data_loss"

    @property
    def info(self) -> OutcomeInfo:
        return _INFO[self]

    @property
    def label(self) -> str:
        return _INFO[self].label

    @property
    def meaning(self) -> str:
        return _INFO[self].meaning

    @property
    def action(self) -> str:
        return _INFO[self].action

    @property
    def severity(self) -> int:
        return _INFO[self].severity


_INFO = {
    Outcome.PASS: OutcomeInfo(
        "PASS",
        "Platform handled the failure: buffered, retried, recovered after restore; the checker found nothing lost.",
        "Platform is resilient - no action needed",
        0,
        False,
        "green",
    ),
    Outcome.FAILED_GRACEFULLY: OutcomeInfo(
        "FAILED GRACEFULLY",
        "Platform detected the failure: raised a typed error with a meaningful message; nothing was lost.",
        "Failing gracefully - document behavior",
        1,
        False,
        "cyan",
    ),
    Outcome.HANG: OutcomeInfo(
        "HANG",
        "Platform did not detect the failure: missing timeouts, infinite retry loops or deadlocks.",
        "Add timeouts, fix deadlocks",
        3,
        True,
        "yellow",
    ),
    Outcome.CRASH: OutcomeInfo(
        "CRASH",
        "Platform failed catastrophically: unhandled exception, dead process, resource leak or corrupted data.",
        "Critical bug - fix unhandled exception",
        3,
        True,
        "red",
    ),
    Outcome.DATA_LOSS: OutcomeInfo(
        "DATA LOSS",
        "Acknowledged data was lost or duplicated: dropped without logging, incomplete transactions.",
        "Critical bug - fix data pipeline",
        4,
        True,
        "magenta",
    ),
}


def is_failure(outcome: Outcome | str) -> bool:
    """HANG, CRASH and DATA_LOSS fail the run (the exit status depends on it); the other two do not."""
    return Outcome(outcome).info.failure


# What a scenario may declare it expects: the two classes of a platform doing its job. A hang, a crash or lost
# data is a bug to fix, never an expectation to document.
EXPECTABLE = (Outcome.PASS, Outcome.FAILED_GRACEFULLY)


def parse_expected(values: Iterable[object]) -> tuple[Outcome, ...]:
    """The outcomes a scenario declares it expects (e.g. from `chaos_expect("failed_gracefully")`), checked:
    ValueError naming the bad value and the remedy for anything else."""
    expected: list[Outcome] = []
    for value in values:
        name = value.strip().lower().replace(" ", "_") if isinstance(value, str) else None
        if name not in {o.value for o in EXPECTABLE}:
            allowed = ", ".join(repr(o.value) for o in EXPECTABLE)
            raise ValueError(
                f"expected outcome {value!r} is not one a scenario may expect; use {allowed} "
                "(HANG, CRASH and DATA_LOSS are bugs to fix, never an expected result)"
            )
        if Outcome(name) not in expected:
            expected.append(Outcome(name))
    if not expected:
        raise ValueError('no expected outcome given; name at least one, e.g. chaos_expect("failed_gracefully")')
    return tuple(expected)


def worst(outcomes: Iterable[Outcome | str]) -> Outcome:
    """The most severe outcome (DATA_LOSS over CRASH over HANG ...); PASS when there are none."""
    ordered = [Outcome(o) for o in outcomes]
    return max(ordered, key=lambda o: (o.severity, list(Outcome).index(o)), default=Outcome.PASS)


def classify_with_reason(
    test_passed: bool,
    error: BaseException | None,
    timed_out: bool,
    check: CheckResult | None,
    graceful_types: tuple[type, ...] = (),
) -> tuple[Outcome, str]:
    """The outcome and one sentence saying why, for the report; third-party anomalies the checker found are
    named after it (they never change the outcome themselves)."""
    outcome, reason = _classify(test_passed, error, timed_out, check, graceful_types)
    remarks = check.remarks() if check is not None else ""
    return outcome, f"{reason}; {remarks}" if remarks else reason


def _classify(
    test_passed: bool,
    error: BaseException | None,
    timed_out: bool,
    check: CheckResult | None,
    graceful_types: tuple[type, ...],
) -> tuple[Outcome, str]:
    if check is not None and check.data_loss:
        return Outcome.DATA_LOSS, _loss_reason(check)
    if timed_out:
        return Outcome.HANG, "the scenario hit its timeout" + (f" ({describe_error(error)})" if error else "")
    if check is not None and check.undrained:
        return Outcome.HANG, _stall_reason(check)
    if error is not None:
        if graceful_types and isinstance(error, graceful_types):
            if str(error).strip():
                return Outcome.FAILED_GRACEFULLY, f"typed error with a message: {describe_error(error)}"
            return Outcome.CRASH, f"{type(error).__name__} without a message: a failure must say what and why"
        return Outcome.CRASH, f"unexpected exception: {describe_error(error)}"
    if not test_passed:
        return Outcome.CRASH, "the scenario failed without an exception (a dead process or a failed check)"
    if check is not None and not check.clean:
        # the seed lists data corruption under crashes: out-of-order, unexpected or altered records
        return Outcome.CRASH, f"data integrity problems ({', '.join(check.violations)}): {check.summary(examples=3)}"
    return Outcome.PASS, "passed; the checker found nothing lost" if check is not None else "passed (no data check)"


def classify(
    test_passed: bool,
    error: BaseException | None,
    timed_out: bool,
    check: CheckResult | None,
    graceful_types: tuple[type, ...] = (),
) -> Outcome:
    """DATA_LOSS overrides everything; then HANG (timed out); then an error is FAILED_GRACEFULLY when it is one
    of `graceful_types` with a non-empty message, else CRASH; a failed test without an error, or a check with
    integrity problems other than loss, is CRASH; otherwise PASS."""
    return classify_with_reason(test_passed, error, timed_out, check, graceful_types)[0]


def describe_error(error: BaseException) -> str:
    """'Type: first line of the message', for a reason line."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _stall_reason(check: CheckResult) -> str:
    keys = sorted({x.key for x in check.undrained})
    where = ", ".join(sorted({x.source for x in check.undrained}))
    return (
        f"check {check.name!r}: {len(keys)} acknowledged record(s) had not reached {where} when the bounded wait "
        f"ended (e.g. {', '.join(keys[:3])}); they are still upstream and nothing downstream claims them: the "
        "pipeline stalled (not lost, not yet written)"
    )


def _loss_reason(check: CheckResult) -> str:
    lost = sorted({x.key for x in check.lost})
    dups = sorted({x.key for x in check.duplicated if x.acknowledged})
    parts = []
    for count_label, keys in ((f"{len(lost)} acknowledged lost", lost), (f"{len(dups)} acknowledged duplicated", dups)):
        if keys:
            parts.append(f"{count_label} (e.g. {', '.join(keys[:3])})")
    if check.unreadable:
        where = ", ".join(u.where for u in check.unreadable[:3])
        parts.append(f"{len(check.unreadable)} record(s) could not be read back (e.g. {where})")
    return f"check {check.name!r}: " + "; ".join(parts)
