"""The checker: compare the ledger (what clients were told) with what independent readers find in the sinks.

This is what turns "the test passed" into "nothing acknowledged was lost": for every sink (a Kafka topic, an
Iceberg table, ...) it reports acknowledged operations that are missing (lost), keys seen more than once
(duplicated), keys nobody wrote (unexpected), per-group sequence going backwards where the sink promises
order (reordered, opt-in per source), contents that differ from what was written (mismatched), records a
reader found but could not decode (unreadable: never skipped silently; an acknowledged record among them is
lost), and what became of operations whose outcome was unknown or failed. A caller that can show an
acknowledged record is still on its way to a sink (upstream holds it, the sink has not claimed it) names it
`undrained`: missing there, it is reported as not yet written (the pipeline stalled: a hang), not as lost.
Where a source's positions are the ones acknowledgements report (a Kafka topic: partition and offset), an
acknowledgement that named the wrong position is a third-party anomaly (k2.chaos.anomaly), reported beside
the verdict.

Every operation is classified exactly once: invoked = acknowledged + failed + unknown + pending, failed =
failed_absent + failed_but_present, unknown + pending = maybe_committed + not_committed (`accounting()`).

    observed = wait_drained(read_topic, ledger.acked_keys(), timeout=60)
    result = check(ledger, observed, name="kafka-pause", ordered=["trades"], ack_positions=["trades"])
    assert not result.data_loss, result.summary()
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from k2.chaos.anomaly import WRONG_ACK_OFFSET, Anomaly, summarize
from k2.chaos.findings import Duplicate, Lost, Mismatch, Observed, Reorder, Unreadable
from k2.chaos.ledger import Ledger, Op, OpState

__all__ = [
    "CheckResult",
    "Duplicate",
    "Lost",
    "Mismatch",
    "Observed",
    "Reorder",
    "Unreadable",
    "check",
    "wait_drained",
]

log = logging.getLogger(__name__)
NO_SINK = "(no sink observed)"


@dataclass
class CheckResult:
    """Everything the checker found; full lists here and in to_dict(), a few examples in summary()."""

    name: str
    sources: list[str]
    ordered_sources: list[str]
    counts: dict[str, int]
    observed: dict[str, int]  # records read per source
    lost: list[Lost] = field(default_factory=list)
    duplicated: list[Duplicate] = field(default_factory=list)
    unexpected: list[Observed] = field(default_factory=list)
    reordered: list[Reorder] = field(default_factory=list)
    mismatched: list[Mismatch] = field(default_factory=list)
    partially_present: list[dict[str, Any]] = field(default_factory=list)  # not acked, in some sinks only
    maybe_committed: list[str] = field(default_factory=list)  # unknown/pending and present
    not_committed: list[str] = field(default_factory=list)  # unknown/pending and absent
    failed_but_present: list[str] = field(default_factory=list)
    failed_absent: int = 0
    unreadable: list[Unreadable] = field(default_factory=list)
    undrained: list[Lost] = field(default_factory=list)  # acked, missing, shown to be still on its way: a stall
    anomalies: list[Anomaly] = field(default_factory=list)  # third-party breaches: beside the verdict, not in it

    @property
    def data_loss(self) -> bool:
        """An acknowledged operation is missing from a sink, or appears in one more than once."""
        return bool(self.lost) or any(d.acknowledged for d in self.duplicated)

    @property
    def violations(self) -> list[str]:
        """Kinds of integrity problem found (data loss included); empty when the check is clean."""
        found = {
            "lost": self.lost,
            "duplicated": self.duplicated,
            "unexpected": self.unexpected,
            "reordered": self.reordered,
            "mismatched": self.mismatched,
            "partially_present": self.partially_present,
            "unreadable": self.unreadable,
            "undrained": self.undrained,
        }
        return [kind for kind, items in found.items() if items]

    @property
    def clean(self) -> bool:
        return not self.violations

    def accounting(self) -> list[str]:
        """Ways the counts fail to add up (see the module docstring); [] when every operation is classified once."""
        c = self.counts
        problems = []
        states = c["acknowledged"] + c["failed"] + c["unknown"] + c["pending"]
        if c["invoked"] != states:
            problems.append(f"invoked {c['invoked']} != acknowledged + failed + unknown + pending = {states}")
        if c["failed"] != self.failed_absent + len(self.failed_but_present):
            problems.append(
                f"failed {c['failed']} != absent {self.failed_absent} + present {len(self.failed_but_present)}"
            )
        undecided = len(self.maybe_committed) + len(self.not_committed)
        if c["unknown"] + c["pending"] != undecided:
            problems.append(f"unknown + pending {c['unknown'] + c['pending']} != maybe + not committed {undecided}")
        if len({x.key for x in self.lost}) > c["acknowledged"]:
            problems.append(f"more keys lost than acknowledged ({c['acknowledged']})")
        return problems

    def remarks(self) -> str:
        """The anomalies, one clause with an example each kind, for the verdict's reason; '' when none."""
        if not self.anomalies:
            return ""
        firsts = {a.kind: a for a in reversed(self.anomalies)}
        examples = "; ".join(a.describe(title=len(firsts) > 1) for a in firsts.values())
        return f"anomalies: {summarize(self.anomalies)} (e.g. {examples})"

    def summary(self, examples: int = 5) -> str:
        """One paragraph for logs and assertion messages: counts plus the first few keys of each problem."""
        c = self.counts
        head = (
            f"check {self.name!r}: {c['invoked']} invoked, {c['acknowledged']} acked, {c['failed']} failed, "
            f"{c['unknown'] + c['pending']} unknown ({len(self.maybe_committed)} maybe committed, "
            f"{len(self.not_committed)} not committed); sinks: "
            + ", ".join(f"{s}={self.observed.get(s, 0)}" for s in self.sources)
        )
        parts = [head]

        def add(label: str, items: list[Any], show: Callable[[Any], str]) -> None:
            if items:
                more = f", +{len(items) - examples} more" if len(items) > examples else ""
                parts.append(f"{label} {len(items)} (e.g. {', '.join(show(i) for i in items[:examples])}{more})")

        add("LOST", self.lost, lambda x: f"{x.key}@{x.source}")
        add("DUPLICATED", self.duplicated, lambda x: f"{x.key}x{x.count}@{x.source}")
        add("unexpected", self.unexpected, lambda x: f"{x.key}@{x.source}")
        add("reordered", self.reordered, lambda x: f"{x.group}:{x.seq}<{x.after_seq}@{x.source}")
        add("mismatched", self.mismatched, lambda x: f"{x.key}.{x.field}@{x.source}")
        add("partially present", self.partially_present, lambda x: f"{x['key']} missing@{','.join(x['absent_from'])}")
        add("failed but present", self.failed_but_present, str)
        add("UNREADABLE", self.unreadable, lambda x: x.where)
        add("NOT YET WRITTEN (stalled)", self.undrained, lambda x: f"{x.key}@{x.source}")
        add("anomalies", self.anomalies, lambda x: f"{x.info.title}: {x.subject}@{x.party}")
        parts.append("DATA LOSS" if self.data_loss else ("clean" if self.clean else "integrity problems"))
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "data_loss": self.data_loss,
            "clean": self.clean,
            "violations": self.violations,
            "summary": self.summary(),
            "sources": self.sources,
            "ordered_sources": self.ordered_sources,
            "counts": dict(self.counts),
            "observed": dict(self.observed),
            "lost": [asdict(x) for x in self.lost],
            "duplicated": [asdict(x) for x in self.duplicated],
            "unexpected": [x._asdict() for x in self.unexpected],
            "reordered": [asdict(x) for x in self.reordered],
            "mismatched": [asdict(x) for x in self.mismatched],
            "partially_present": list(self.partially_present),
            "maybe_committed": list(self.maybe_committed),
            "not_committed": list(self.not_committed),
            "failed_but_present": list(self.failed_but_present),
            "failed_absent": self.failed_absent,
            "unreadable": [asdict(x) for x in self.unreadable],
            "undrained": [asdict(x) for x in self.undrained],
            "anomalies": [x.to_dict() for x in self.anomalies],
            "accounting": self.accounting(),
        }
        return data


def check(
    ledger: Ledger | Iterable[Op],
    observed: Iterable[Observed],
    *,
    name: str,
    sources: Iterable[str] | None = None,
    ordered: Collection[str] = (),
    ack_positions: Collection[str] = (),
    unreadable: Iterable[Unreadable] = (),
    anomalies: Iterable[Anomaly] = (),
    undrained: Mapping[str, Collection[str]] | None = None,
) -> CheckResult:
    """Check what was read from the sinks against the ledger.

    `sources`: the sinks that must hold every acknowledged operation (default: every source seen in `observed`;
    name them explicitly so an empty sink counts as losing everything). `ordered`: sources whose position
    order must follow each group's seq (a Kafka partition does; an Iceberg table does not). `ack_positions`:
    sources whose positions are what an acknowledgement reports, as (partition, offset): each acknowledged
    record must be found where its acknowledgement said. `unreadable`: what the readers could not decode.
    `anomalies`: breaches the caller found by other means (e.g. a sink's own bookkeeping), reported alike.
    `undrained`: per source, keys the caller showed are still on their way to it (see the module docstring).
    """
    ops = {op.key: op for op in (ledger.ops() if isinstance(ledger, Ledger) else ledger)}
    by_source: dict[str, list[Observed]] = defaultdict(list)
    for item in observed:
        item = item if isinstance(item, Observed) else Observed(*item)
        by_source[item.source].append(item._replace(key=str(item.key)))
    required = list(dict.fromkeys(sources)) if sources is not None else sorted(by_source)
    if not required:
        required = [NO_SINK]
    counts = Counter(op.state.value for op in ops.values())
    result = CheckResult(
        name=name,
        sources=required,
        ordered_sources=sorted(set(ordered)),
        counts={
            "invoked": len(ops),
            "acknowledged": counts[OpState.ACKED.value],
            "failed": counts[OpState.FAILED.value],
            "unknown": counts[OpState.UNKNOWN.value],
            "pending": counts[OpState.INVOKED.value],
        },
        observed={s: len(items) for s, items in sorted(by_source.items())},
        unreadable=list(unreadable),
        anomalies=list(anomalies),
    )
    present: dict[str, set[str]] = {}
    for source, items in by_source.items():
        seen = _scan_source(result, ops, source, items)
        present[source] = set(seen)
        if source in ordered:
            result.reordered.extend(_reorders(ops, source, items))
        if source in ack_positions:
            result.anomalies.extend(_wrong_ack_positions(ops, source, seen))
    _classify_ops(result, ops, present, required, undrained or {})
    log.info("%s", result.summary())
    return result


def _scan_source(result: CheckResult, ops: dict[str, Op], source: str, items: list[Observed]) -> dict[str, list[Any]]:
    """Duplicates, unexpected and mismatched records in one source; returns positions per key."""
    seen: dict[str, list[Any]] = defaultdict(list)
    for item in items:
        seen[item.key].append(item.position)
        op = ops.get(item.key)
        if op is None:
            if len(seen[item.key]) == 1:
                result.unexpected.append(item)
            continue
        if len(seen[item.key]) > 1:
            continue  # compare contents once per key
        for fname, expected, got in (
            ("group", op.group, item.group),
            ("seq", op.seq, item.seq),
            ("digest", op.payload_digest, item.digest),
        ):
            if expected is not None and got is not None and expected != got:
                result.mismatched.append(Mismatch(item.key, source, fname, expected, got))
    for key, positions in seen.items():
        if len(positions) > 1:
            op = ops.get(key)
            acked = op is not None and op.state is OpState.ACKED
            result.duplicated.append(Duplicate(key, source, len(positions), positions, acked))
    return seen


def _reorders(ops: dict[str, Op], source: str, items: list[Observed]) -> list[Reorder]:
    """Per group, walk the records in position order; a seq lower than one already seen is out of order."""
    groups: dict[Any, list[Observed]] = defaultdict(list)
    for item in items:
        op = ops.get(item.key)
        group = item.group if item.group is not None else (op.group if op else None)
        seq = item.seq if item.seq is not None else (op.seq if op else None)
        if item.position is None or seq is None:
            continue
        groups[group].append(item._replace(group=group, seq=seq))
    found = []
    for group, records in groups.items():
        try:
            records.sort(key=lambda r: r.position)
        except TypeError:
            log.warning("checker: positions in %s are not comparable; ordering of group %s not checked", source, group)
            continue
        keys_seen: set[str] = set()
        highest: Observed | None = None
        for record in records:
            if record.key in keys_seen:
                continue  # a duplicate, reported as such
            keys_seen.add(record.key)
            seq = record.seq
            assert seq is not None  # records without a sequence were left out above
            if highest is not None and highest.seq is not None and seq < highest.seq:
                found.append(Reorder(source, group, record.key, seq, highest.key, highest.seq, record.position))
            elif highest is None or highest.seq is None or seq > highest.seq:
                highest = record
    return found


def _wrong_ack_positions(ops: dict[str, Op], source: str, seen: dict[str, list[Any]]) -> list[Anomaly]:
    """Acknowledged records found somewhere other than the (partition, offset) their acknowledgement named."""
    found = []
    for key, positions in seen.items():
        op = ops.get(key)
        if op is None or op.state is not OpState.ACKED:
            continue
        acked = (op.partition, op.offset)
        if op.offset is not None and op.offset >= 0 and acked in [tuple(p) for p in positions if p is not None]:
            continue
        claimed = [op.partition, op.offset] if op.offset is not None and op.offset >= 0 else None
        evidence = {"acknowledged_at": claimed, "found_at": [list(p) for p in positions], "source": source}
        found.append(Anomaly(WRONG_ACK_OFFSET.name, source.split(":", 1)[0], key, evidence))
    return found


def _classify_ops(
    result: CheckResult,
    ops: dict[str, Op],
    present: dict[str, set[str]],
    required: list[str],
    undrained: Mapping[str, Collection[str]],
) -> None:
    """Lost (or still undrained) acknowledged operations, and the fate of failed/unknown ones."""
    unreadable_at = {(u.source, u.partition, u.offset): u for u in result.unreadable}
    for key, op in ops.items():
        in_sinks = [s for s in required if key in present.get(s, ())]
        anywhere = bool(in_sinks) or any(key in keys for keys in present.values())
        if op.state is OpState.ACKED:
            for source in required:
                if key not in present.get(source, ()):
                    garbled = unreadable_at.get((source, op.partition, op.offset))
                    cause = f"unreadable at its acknowledged position: {garbled.error}" if garbled else None
                    missing = Lost(key, source, op.group, op.seq, op.partition, op.offset, cause)
                    stalled = garbled is None and key in undrained.get(source, ())
                    (result.undrained if stalled else result.lost).append(missing)
            continue
        if in_sinks and len(in_sinks) < len(required):
            absent = [s for s in required if s not in in_sinks]
            result.partially_present.append(
                {"key": key, "state": op.state.value, "present_in": in_sinks, "absent_from": absent}
            )
        if op.state is OpState.FAILED:
            if anywhere:
                result.failed_but_present.append(key)
            else:
                result.failed_absent += 1
        elif anywhere:
            result.maybe_committed.append(key)
        else:
            result.not_committed.append(key)


def wait_drained(
    read: Callable[[], Iterable[Observed]],
    expected_keys: Iterable[str] | Ledger,
    timeout: float,
    poll: float = 0.25,
    *,
    sources: Iterable[str] | None = None,
) -> list[Observed]:
    """Re-read until every expected (acknowledged) key is present, or the deadline passes; returns the last read.

    The first re-read comes after `poll` s, then the interval doubles up to 1 s: a table sink's read (catalog
    and scans) costs CPU that the writer being waited for needs, while most waits end within the first reads.

    `expected_keys` may be the ledger itself (its acknowledged keys). With `sources`, a key must be present in
    each of them; otherwise in any. Never fails on the deadline: the checker then reports what is missing,
    which is the point.
    """
    keys = expected_keys.acked_keys() if isinstance(expected_keys, Ledger) else expected_keys
    expected = {str(k) for k in keys}
    required = list(sources) if sources is not None else None
    deadline = time.monotonic() + timeout
    reads = 0
    interval = poll
    while True:
        observation = list(read())
        reads += 1
        missing = _missing(expected, observation, required)
        if not missing:
            log.info("wait_drained: all %d keys present after %d reads", len(expected), reads)
            return observation
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.warning(
                "wait_drained: %d of %d keys still missing after %.1fs (%d reads), e.g. %s",
                len(missing),
                len(expected),
                timeout,
                reads,
                sorted(missing)[:5],
            )
            return observation
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, max(poll, 1.0))


def _missing(expected: set[str], observation: list[Observed], required: list[str] | None) -> set[str]:
    if required is None:
        return expected - {str(o.key) for o in observation}
    per_source: dict[str, set[str]] = defaultdict(set)
    for o in observation:
        per_source[o.source].add(str(o.key))
    missing: set[str] = set()
    for source in required:
        missing |= expected - per_source.get(source, set())
    return missing
