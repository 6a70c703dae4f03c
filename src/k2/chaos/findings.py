"""What the checker reports, one type per kind of finding: plain, frozen, JSON-able (see k2.chaos.checker)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["Duplicate", "Lost", "Mismatch", "Observed", "Reorder", "Unreadable"]


class Observed(NamedTuple):
    """One record as an independent reader found it. `position` orders records within an ordered source
    (e.g. the offset, or (partition, offset)); `digest` is compared with the ledger's payload digest if both are set."""

    key: str
    group: str | None
    seq: int | None
    source: str
    position: Any = None
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A record a reader found but could not decode (garbled bytes, unknown schema, empty value)."""

    source: str
    topic: str | None
    partition: int | None
    offset: int | None
    error: str
    size: int | None = None

    @property
    def where(self) -> str:
        return f"{self.topic or self.source} {self.partition}/{self.offset}"


@dataclass(frozen=True, slots=True)
class Lost:
    key: str
    source: str
    group: str | None
    seq: int | None
    partition: int | None
    offset: int | None
    cause: str | None = None  # what is known of why: e.g. unreadable at its acknowledged position


@dataclass(frozen=True, slots=True)
class Duplicate:
    key: str
    source: str
    count: int
    positions: list[Any]
    acknowledged: bool


@dataclass(frozen=True, slots=True)
class Reorder:
    """`key` (seq) was found after `after_key` (after_seq) although its seq is lower."""

    source: str
    group: str | None
    key: str
    seq: int
    after_key: str
    after_seq: int
    position: Any


@dataclass(frozen=True, slots=True)
class Mismatch:
    key: str
    source: str
    field: str
    expected: Any
    observed: Any
