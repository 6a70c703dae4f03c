"""One outcome class for an exploration run, with the reason and a signature the shrinker compares.

In order of precedence, as for the scripted scenarios (k2.chaos.outcome):

- DATA_LOSS: an acknowledged trade is gone or stored more than once. Where it went is in the signature and
  the reason, the platform's own loss first: on the topic but not in Iceberg although the writers committed
  past it (`data_loss:lost`, the platform's writers), on neither (`data_loss:lost_by_broker`: the broker
  acknowledged what it did not keep; an anomaly beside it names the party and the evidence; one acknowledged
  past where the topic read back stopped is only unseen, `topic_read_short`), or more than once
  (`data_loss:duplicated`).
- HANG: an operation outlived its deadline by far (a query still running `hang_after_s` after it began), or
  the writers never committed everything acknowledged within the drain timeout (records missing from
  Iceberg are then not proven lost: the pipeline is stuck).
- CRASH: an unexpected exception in the workload, a writer that died with no fault on it, or records the
  checker found corrupted (unexpected, reordered, altered).
- FAILED_GRACEFULLY: an abort rule stopped the run (the steady state was lost beyond what the user accepts),
  and nothing was lost.
- PASS: none of the above; the violations of the steady state along the way are reported, not judged.

What a component K2 does not own did wrong is an anomaly, listed beside the outcome with its evidence and
never blamed on the platform: the broker acknowledging a trade it then does not have (e.g. Tansu answering
a retry after a kill with "duplicate sequence", i.e. delivered, at an offset where another record is), a
wrong acknowledged offset, a record Iceberg got from the topic that the topic no longer serves. An anomaly
changes the outcome only through what it did to the data (a trade really gone is DATA_LOSS whoever lost it,
as in the scripted scenarios); every anomaly is in the reason, so a PASS with one never reads clean.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from k2.chaos.anomaly import Anomaly, AnomalyKind, register, summarize
from k2.chaos.checker import CheckResult
from k2.chaos.outcome import Outcome

__all__ = ["BROKER_LOST", "TOPIC_GAP", "TOPIC_READ_SHORT", "Hang", "Verdict", "judge"]

BROKER_LOST = register(
    AnomalyKind(
        "broker_lost_acknowledged",
        "acknowledged, then not kept by the broker",
        "the broker acknowledged a record that is on neither the topic nor downstream: a producer that trusts its "
        "acknowledgements has lost it",
    )
)
TOPIC_GAP = register(
    AnomalyKind(
        "topic_gap",
        "acknowledged records missing from the topic",
        "records that reached Iceberg (so the broker had them) were not served when the topic was read back",
    )
)


TOPIC_READ_SHORT = register(
    AnomalyKind(
        "topic_read_short",
        "the topic read back stopped short of acknowledged offsets",
        "the broker served the topic back only up to these offsets within the check's deadline (slow or stalled): "
        "acknowledged records beyond them were neither seen kept nor seen missing, so none is blamed on the broker",
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


def _read_to(topic: Mapping[tuple[int, int], str]) -> dict[int, int]:
    """Per partition, the highest offset the topic read back reached."""
    reached: dict[int, int] = {}
    for partition, offset in topic:
        reached[partition] = max(reached.get(partition, -1), offset)
    return reached


def _unreached(check: CheckResult, kafka_source: str, topic: Mapping[tuple[int, int], str] | None) -> set[str]:
    """Keys missing from the topic whose acknowledged offset the read back never reached (it ended at its
    deadline first): not seen missing, so not proven lost by the broker. Without `topic`, none."""
    if topic is None:
        return set()
    reached = _read_to(topic)
    return {
        x.key
        for x in check.lost
        if x.source == kafka_source
        and x.partition is not None
        and x.offset is not None
        and x.offset > reached.get(x.partition, -1)
    }


def _third_party(
    check: CheckResult, kafka_source: str, topic: Mapping[tuple[int, int], str], unreached: set[str]
) -> list[Anomaly]:
    """The broker's share of what the checker found missing (see the module docstring)."""
    missing_topic = {x.key: x for x in check.lost if x.source == kafka_source}
    missing_sink = {x.key for x in check.lost if x.source != kafka_source}
    found = []
    short = sorted(set(missing_topic) & unreached)
    if short:
        read_to = {str(p): o for p, o in sorted(_read_to(topic).items())}
        evidence = {"records": len(short), "examples": short[:5], "read_to": read_to}
        found.append(Anomaly(TOPIC_READ_SHORT.name, "kafka", short[0], evidence))
    for key in sorted((set(missing_topic) & missing_sink) - unreached):
        lost = missing_topic[key]
        claimed = [lost.partition, lost.offset] if lost.offset is not None else None
        there = (
            topic.get((lost.partition, lost.offset)) if lost.partition is not None and lost.offset is not None else None
        )
        found.append(
            Anomaly(
                BROKER_LOST.name,
                "kafka",
                key,
                {"acknowledged_at": claimed, "found_at": None, "record_at_that_offset": there},
            )
        )
    unread = sorted(set(missing_topic) - missing_sink)
    if unread:
        found.append(Anomaly(TOPIC_GAP.name, "kafka", unread[0], {"records": len(unread), "examples": unread[:5]}))
    return found


def judge(
    check: CheckResult | None,
    *,
    caught_up: bool,
    kafka_source: str,
    hangs: list[Hang],
    crashes: list[str],
    aborted: str | None,
    topic: Mapping[tuple[int, int], str] | None = None,
) -> Verdict:
    """The verdict of one run. `topic`: which key the topic read back found at each (partition, offset): the
    evidence, and how far the read reached (a record acknowledged past that is not blamed on the broker)."""
    anomalies: list[Anomaly] = list(check.anomalies) if check is not None else []
    unreached = _unreached(check, kafka_source, topic) if check is not None else set()
    if check is not None:
        anomalies += _third_party(check, kafka_source, topic or {}, unreached)
    verdict = _outcome(check, caught_up, kafka_source, list(hangs), list(crashes), aborted, unreached)
    verdict.anomalies = [a.to_dict() for a in anomalies]
    if anomalies:
        firsts = {a.kind: a for a in reversed(anomalies)}
        examples = "; ".join(a.describe() for a in firsts.values())
        verdict.reason = f"{verdict.reason}; anomalies beside it: {summarize(anomalies)} (e.g. {examples})"
    return verdict


def _outcome(
    check: CheckResult | None,
    caught_up: bool,
    kafka_source: str,
    hangs: list[Hang],
    crashes: list[str],
    aborted: str | None,
    unreached: set[str],
) -> Verdict:
    parts: dict[str, Any] = {"check": check, "hangs": hangs, "crashes": crashes, "aborted": aborted}
    if check is not None:
        missing_topic = {x.key for x in check.lost if x.source == kafka_source}
        missing_sink = {x.key for x in check.lost if x.source != kafka_source}
        writer_lost = sorted(missing_sink - missing_topic)
        unread = sorted(missing_sink & missing_topic & unreached)  # not in Iceberg; the topic read stopped short
        gone = sorted((missing_sink & missing_topic) - unreached)
        duplicated = sorted({x.key for x in check.duplicated if x.acknowledged})
        also = f"; the broker also lost {len(gone)} (see the anomaly)" if gone else ""
        short = (
            f" ({len(unread)} of them not read back: the topic read stopped short, see the anomaly)" if unread else ""
        )
        if (writer_lost or unread) and caught_up:
            lost = sorted([*writer_lost, *unread])
            return Verdict(
                Outcome.DATA_LOSS,
                "data_loss:lost",
                f"{len(lost)} acknowledged trade(s) on the "
                f"topic never reached Iceberg although the writers committed past them (e.g. "
                f"{', '.join(lost[:3])}){short}{also}",
                **parts,
            )
        if gone:
            return Verdict(
                Outcome.DATA_LOSS,
                "data_loss:lost_by_broker",
                f"{len(gone)} acknowledged trade(s) are "
                f"neither on the topic nor in Iceberg: the broker acknowledged what it did not keep (e.g. "
                f"{', '.join(gone[:3])}; the anomaly beside it has the evidence)",
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
        if writer_lost or unread:
            hangs.append(
                Hang(
                    "drain",
                    -1.0,
                    f"the writers did not commit {len(writer_lost) + len(unread)} acknowledged trade(s) "
                    f"within the drain timeout; they are not in Iceberg{short}",
                )
            )
    if hangs:
        return Verdict(Outcome.HANG, f"hang:{hangs[0].operation}", hangs[0].detail, **parts)
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
    return Verdict(Outcome.PASS, "pass", "nothing acknowledged was lost or duplicated", **parts)
