"""One outcome class for an exploration run, with the reason and a signature the shrinker compares.

In order of precedence, as for the scripted scenarios (k2.chaos.outcome):

- DATA_LOSS: an acknowledged trade is missing from the topic or from Iceberg although the writers committed
  past it, or is there more than once. Where it went missing is named: absent from the topic means the
  broker (a third party) lost it; on the topic but not in Iceberg means the platform's writers did.
- HANG: an operation outlived its deadline by far (a query still running `hang_after_s` after it began), or
  the writers never committed everything acknowledged within the drain timeout (records missing from
  Iceberg are then not proven lost: the pipeline is stuck).
- CRASH: an unexpected exception in the workload, a writer that died with no fault on it, or records the
  checker found corrupted (unexpected, reordered, altered).
- FAILED_GRACEFULLY: an abort rule stopped the run (the steady state was lost beyond what the user accepts),
  and nothing was lost.
- PASS: none of the above; the violations of the steady state along the way are reported, not judged.

Anomalies of components K2 does not own (e.g. the broker acknowledging a wrong offset) are listed beside
the outcome with their evidence; they never change it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from k2.chaos.anomaly import Anomaly, AnomalyKind, register
from k2.chaos.checker import CheckResult
from k2.chaos.outcome import Outcome

__all__ = ["TOPIC_GAP", "Hang", "Verdict", "judge"]

TOPIC_GAP = register(
    AnomalyKind(
        "topic_gap",
        "acknowledged records missing from the topic",
        "records that reached Iceberg (so the broker had them) were not served when the topic was read back",
    )
)


@dataclass(frozen=True)
class Hang:
    operation: str  # "query" | "drain"
    at_s: float  # seconds into the run when it was seen
    detail: str
    stacks: str | None = None  # every thread's stack when it was seen

    def to_dict(self) -> dict[str, Any]:
        return {"operation": self.operation, "at_s": round(self.at_s, 3), "detail": self.detail, "stacks": self.stacks}


@dataclass
class Verdict:
    outcome: Outcome
    signature: str  # outcome plus what kind of failure: data_loss:lost, data_loss:duplicated, hang:query, ...
    reason: str
    check: CheckResult | None = None
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    hangs: list[Hang] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    aborted: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "label": self.outcome.label,
            "signature": self.signature,
            "reason": self.reason,
            "aborted": self.aborted,
            "anomalies": self.anomalies,
            "hangs": [h.to_dict() for h in self.hangs],
            "crashes": self.crashes,
            "check": None if self.check is None else self.check.to_dict(),
        }


def judge(*args: Any, **kwargs: Any) -> Verdict:
    """The verdict of one run (see the module docstring); the anomalies, if any, close its reason."""
    verdict = _judge(*args, **kwargs)
    remarks = verdict.check.remarks() if verdict.check is not None else ""
    if remarks:
        verdict.reason = f"{verdict.reason}; {remarks}"
    return verdict


def _judge(
    check: CheckResult | None,
    *,
    caught_up: bool,
    kafka_source: str,
    hangs: list[Hang],
    crashes: list[str],
    aborted: str | None,
) -> Verdict:
    anomalies = [a.to_dict() if hasattr(a, "to_dict") else dict(a) for a in getattr(check, "anomalies", []) or []]
    parts: dict[str, Any] = {
        "check": check,
        "anomalies": anomalies,
        "hangs": list(hangs),
        "crashes": list(crashes),
        "aborted": aborted,
    }
    if check is not None:
        missing_topic = {x.key for x in check.lost if x.source == kafka_source}
        missing_sink = {x.key for x in check.lost if x.source != kafka_source}
        gone = sorted(missing_topic & missing_sink)  # nowhere: the broker lost them before any writer read them
        writer_lost = sorted(missing_sink - missing_topic)  # on the topic, never in Iceberg
        unread = sorted(missing_topic - missing_sink)  # in Iceberg (so they were on the topic), not read back
        duplicated = sorted({x.key for x in check.duplicated if x.acknowledged})
        if unread:
            anomalies.append(
                Anomaly(
                    TOPIC_GAP.name,
                    "kafka",
                    unread[0],
                    {"records": len(unread), "examples": unread[:5], "topic": kafka_source},
                ).to_dict()
            )
        if gone:
            return Verdict(
                Outcome.DATA_LOSS,
                "data_loss:lost",
                f"{len(gone)} acknowledged trade(s) are neither on "
                f"the topic nor in Iceberg: the broker lost them (e.g. {', '.join(gone[:3])})",
                **parts,
            )
        if writer_lost and caught_up:
            return Verdict(
                Outcome.DATA_LOSS,
                "data_loss:lost",
                f"{len(writer_lost)} acknowledged trade(s) on the "
                f"topic never reached Iceberg although the writers committed past them (e.g. "
                f"{', '.join(writer_lost[:3])})",
                **parts,
            )
        if duplicated:
            where = sorted({x.source for x in check.duplicated if x.acknowledged})
            return Verdict(
                Outcome.DATA_LOSS,
                "data_loss:duplicated",
                f"{len(duplicated)} acknowledged trade(s) "
                f"stored more than once in {', '.join(where)} (e.g. {', '.join(duplicated[:3])})",
                **parts,
            )
        if writer_lost:
            hangs = [
                *hangs,
                Hang(
                    "drain",
                    -1.0,
                    f"the writers did not commit {len(writer_lost)} acknowledged "
                    "trade(s) within the drain timeout; they are on the topic, not in Iceberg",
                ),
            ]
            parts["hangs"] = hangs
    if hangs:
        first = hangs[0]
        return Verdict(Outcome.HANG, f"hang:{first.operation}", first.detail, **parts)
    problems = [] if check is None else [v for v in check.violations if v not in ("lost", "duplicated")]
    if (
        check is not None
        and "partially_present" in problems
        and all(p["present_in"] != [kafka_source] for p in check.partially_present)
    ):
        problems.remove("partially_present")  # in Iceberg, only not read back from the topic: not corruption
    if crashes or problems:
        what = crashes[0].splitlines()[0] if crashes else f"data integrity problems: {', '.join(problems)}"
        return Verdict(Outcome.CRASH, "crash", what, **parts)
    if aborted:
        return Verdict(Outcome.FAILED_GRACEFULLY, "failed_gracefully", f"aborted: {aborted}; nothing was lost", **parts)
    note = (
        f"; {len(anomalies)} third-party anomal{'y' if len(anomalies) == 1 else 'ies'} beside it" if anomalies else ""
    )
    return Verdict(Outcome.PASS, "pass", "the checker found nothing lost or duplicated" + note, **parts)
