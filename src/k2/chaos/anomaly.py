"""Anomalies: a component broke its own contract, shown beside the verdict with the evidence.

Why not a verdict of its own: an anomaly is a fact about a third party (the broker said a record is at
offset 3; it is at 9274), not about whether the scenario lost data. A scenario with an anomaly keeps its
outcome (PASS stays PASS, DATA_LOSS only if a record is really missing), and the anomaly is reported next
to it with what proves it, so a platform team can take it to the component's maintainers.

Every kind is registered once here with a title and what it means; anything that finds one (the checker,
the fault explorer) builds `Anomaly(kind, party, subject, evidence)`:

    Anomaly(WRONG_ACK_OFFSET.name, "kafka", "T-17", {"acknowledged_at": [0, 3], "found_at": [[0, 9274]]})
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KINDS", "WRONG_ACK_OFFSET", "Anomaly", "AnomalyKind", "register", "summarize"]


@dataclass(frozen=True, slots=True)
class AnomalyKind:
    name: str  # stable identifier, in report.json
    title: str  # what a reader sees: "acknowledged with a wrong offset"
    meaning: str  # why it matters, for the report


KINDS: dict[str, AnomalyKind] = {}


def register(kind: AnomalyKind) -> AnomalyKind:
    """Add a kind to the registry (a name is registered once: reports must mean one thing by it)."""
    if kind.name in KINDS and KINDS[kind.name] != kind:
        raise ValueError(f"anomaly kind {kind.name!r} is already registered differently; choose another name")
    KINDS[kind.name] = kind
    return kind


WRONG_ACK_OFFSET = register(
    AnomalyKind(
        "wrong_ack_offset",
        "acknowledged with a wrong offset",
        "the acknowledgement named a position (partition, offset) where the record is not, or none at all; a "
        "consumer or audit that trusts acknowledged offsets is misled",
    )
)


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One observed breach: which kind, by whom (`party`: the component, e.g. "kafka"), about what (`subject`:
    a record key or a position), and the evidence (JSON data: what was claimed and what was found)."""

    kind: str
    party: str
    subject: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def info(self) -> AnomalyKind:
        return KINDS.get(self.kind) or AnomalyKind(self.kind, self.kind.replace("_", " "), "")

    def describe(self, *, title: bool = True) -> str:
        """One line: 'acknowledged with a wrong offset (kafka): T-17: acknowledged_at=[0, 3], found_at=...'."""
        evidence = ", ".join(f"{k}={v}" for k, v in self.evidence.items())
        head = f"{self.info.title} ({self.party}): " if title else ""
        return f"{head}{self.subject}" + (f": {evidence}" if evidence else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.info.title,
            "party": self.party,
            "subject": self.subject,
            "evidence": dict(self.evidence),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Anomaly:
        return cls(str(data["kind"]), str(data["party"]), str(data["subject"]), dict(data.get("evidence") or {}))


def summarize(anomalies: Iterable[Anomaly | Mapping[str, Any]]) -> str:
    """Counts per kind and party: '6 acknowledged with a wrong offset (kafka)'; '' when there are none."""
    items = [a if isinstance(a, Anomaly) else Anomaly.from_dict(a) for a in anomalies]
    counts = Counter((a.info.title, a.party) for a in items)
    return "; ".join(f"{n} {title} ({party})" for (title, party), n in counts.items())
