"""Audit a table's exactly-once bookkeeping over its whole history, as a reader outside the writer.

The writer's promise (k2.platform.iceberg_tables) rests on one invariant: the `k2.offsets` a snapshot
records say "every row of that partition below this offset is in the table", so along the snapshot
history they never go backwards, and no row sits at or above the offset recorded for its partition (a
later replay from the recorded offset would write it again). This module checks both, plus rows that
came from the same Kafka position twice, on any table:

    problems = audit_table(table)          # [] when the bookkeeping is sound
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot, ancestors_of

from k2.platform.iceberg_tables import Offsets, offsets_of

__all__ = ["OffsetProblem", "audit_table", "offset_history"]


@dataclass(frozen=True, slots=True)
class OffsetProblem:
    """One break of the invariant, with what proves it."""

    kind: str  # offsets_regressed | row_above_offsets | duplicate_position
    table: str
    topic: str | None
    partition: int
    detail: str
    snapshot_id: int | None = None


def offset_history(table: Table) -> list[tuple[Snapshot, Offsets]]:
    """The current snapshot's ancestry, oldest first, with the offsets each K2 snapshot recorded."""
    chain = list(ancestors_of(table.current_snapshot(), table.metadata))
    return [(snap, offsets) for snap in reversed(chain) if (offsets := offsets_of(snap)) is not None]


def audit_table(table: Table) -> list[OffsetProblem]:
    """Every break of the bookkeeping invariant in `table` (see the module docstring); [] when sound."""
    name = ".".join(table.name())
    problems: list[OffsetProblem] = []
    latest: Offsets = {}
    for snapshot, offsets in offset_history(table):
        for topic, parts in offsets.items():
            for partition, offset in parts.items():
                before = latest.get(topic, {}).get(partition)
                if before is not None and offset < before:
                    problems.append(
                        OffsetProblem("offsets_regressed", name, topic, partition,
                                      f"recorded offset went from {before} back to {offset}", snapshot.snapshot_id)
                    )  # fmt: skip
                latest.setdefault(topic, {})[partition] = offset
    problems += _rows_against(table, name, latest)
    return problems


def _rows_against(table: Table, name: str, recorded: Offsets) -> list[OffsetProblem]:
    """Rows at or above their partition's recorded offset, and Kafka positions present twice."""
    if table.current_snapshot() is None:
        return []
    rows = table.scan(selected_fields=("kafka_partition", "kafka_offset")).to_arrow()
    positions: Counter[tuple[Any, Any]] = Counter(
        zip(rows.column("kafka_partition").to_pylist(), rows.column("kafka_offset").to_pylist(), strict=True)
    )
    problems = [
        OffsetProblem("duplicate_position", name, None, p, f"offset {o} is in the table {n} times")
        for (p, o), n in sorted(positions.items())
        if n > 1
    ]
    # A table holds the rows of one topic (trades_* from the trades topic): its recorded offsets bound them all.
    if len(recorded) == 1:
        (topic, parts), highest = next(iter(recorded.items())), dict[int, int]()
        for partition, offset in positions:
            highest[partition] = max(highest.get(partition, -1), offset)
        for partition, top in sorted(highest.items()):
            bound = parts.get(partition)
            if bound is None or top >= bound:
                problems.append(
                    OffsetProblem("row_above_offsets", name, topic, partition,
                                  f"row at offset {top} but the recorded next offset is {bound}")
                )  # fmt: skip
    return problems
