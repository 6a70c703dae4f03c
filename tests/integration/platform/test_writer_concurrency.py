"""Two writers committing to one table at once (a rebalance, a zombie writer), on the real catalog (PostgreSQL)
and object store (SeaweedFS): every row once, and the recorded offsets never go backwards (issue #10, 2b)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.platform.pipeline_helpers import fresh_config, make_trade, running_stack

from k2.platform import iceberg_tables as tables
from k2.platform.config import PlatformConfig
from k2.platform.table_audit import audit_table, offset_history
from k2.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TOPIC = "trades"
STEP = 20


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack() as running:
        yield running


def batch(partition: int, start: int, count: int) -> tables.TableBuffer:
    buffer = tables.TableBuffer("trade")
    for offset in range(start, start + count):
        buffer.add(tables_record(partition, offset), partition, offset)
    return buffer


def tables_record(partition: int, offset: int) -> dict[str, Any]:
    from k2.platform.validation import validate_trade

    return validate_trade(make_trade(offset, "BTC-USD", trade_id=f"T-{partition}-{offset}"))


class Writer:
    """The writer's commit path alone (k2.platform.iceberg_tables), on its own catalog connection."""

    def __init__(self, config: PlatformConfig) -> None:
        self.catalog = tables.build_catalog(config)
        self.namespace = config.namespace
        self.reads = self.calls = self.commits = 0

    def table(self) -> Any:
        self.reads += 1
        return tables.open_table(self.catalog, self.namespace, "trade", "crypto", create=True)

    def write(self, partition: int, start: int, count: int) -> int:
        self.calls += 1
        written, _ = tables.write_exactly_once(self.table, batch(partition, start, count), TOPIC,
                                               {partition: start + count}, attempts=100)  # fmt: skip
        self.commits += bool(written)
        return written


def test_a_stale_writer_does_not_append_what_another_just_committed(stack: LocalStack) -> None:
    config = fresh_config(stack)
    a, b = Writer(config), Writer(config)
    stale = a.table()  # A reads the table
    assert b.write(0, 0, 10) == 10  # B appends partition-0 rows 0-9
    views = iter([stale])
    written, dropped = tables.write_exactly_once(
        lambda: next(views, None) or a.table(), batch(0, 0, 10), TOPIC, {0: 10}
    )  # A appends the same rows from its stale view: the conflict reaches K2, which re-reads and drops them
    assert (written, dropped) == (0, 10)
    table = a.table()
    assert table.scan().to_arrow().num_rows == 10
    assert audit_table(table) == []


def test_two_writers_on_overlapping_and_disjoint_partitions_commit_each_row_once(stack: LocalStack) -> None:
    """A owns partitions 0 and 1, B owns 1 and 2 (both hold partition 1, as around a rebalance); both commit
    batches of 20 offsets per partition as fast as they can, so their commits race."""
    config = fresh_config(stack)
    per_partition = 200
    writers = {"A": (Writer(config), (0, 1)), "B": (Writer(config), (1, 2))}
    writers["A"][0].table()  # create the table before the race
    start = threading.Barrier(len(writers))
    errors: list[BaseException] = []

    def run(writer: Writer, partitions: tuple[int, ...]) -> None:
        try:
            start.wait(30)
            for offset in range(0, per_partition, STEP):
                for partition in partitions:
                    writer.write(partition, offset, STEP)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=spec) for spec in writers.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(240)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)

    table = writers["A"][0].table()
    rows = table.scan(selected_fields=("trade_id", "kafka_partition", "kafka_offset")).to_arrow().to_pylist()
    ids = [r["trade_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a row was committed twice"
    assert set(ids) == {f"T-{p}-{o}" for p in (0, 1, 2) for o in range(per_partition)}
    assert audit_table(table) == []  # offsets never decreased along the history; no row above them
    assert tables.stored_offsets(table) == {TOPIC: {0: per_partition, 1: per_partition, 2: per_partition}}
    history = offset_history(table)
    assert len(history) == sum(w.commits for w, _ in writers.values())
    conflicts = sum(w.reads - w.calls for w, _ in writers.values())  # a re-read follows each lost race
    assert conflicts > 0, "the writers never raced: the test proved nothing"


def test_the_checkers_iceberg_reader_reports_broken_bookkeeping_as_an_anomaly(stack: LocalStack) -> None:
    from k2.chaos.checker import check
    from k2.chaos.ledger import Ledger
    from k2.scenarios.sinks import BROKEN_BOOKKEEPING, IcebergReader

    config = fresh_config(stack)
    writer = Writer(config)
    writer.write(0, 0, 10)
    reader = IcebergReader(config)
    assert reader.audit() == []
    # what the writer claims: a trade on the topic at or above it that is not in Iceberg is undrained, not lost
    assert reader.claimed(TOPIC) == {0: 10} and reader.claimed("another-topic") == {}
    # what pyiceberg's internal retry used to commit: new rows, with the offsets of a stale view
    late = batch(0, 10, 5)
    tables.append_with_offsets(writer.table(), tables.rows_to_arrow("trade", late.columns), {TOPIC: {0: 4}})
    found = reader.audit()
    assert [(a.kind, a.party, a.evidence["problem"]) for a in found] == [
        (BROKEN_BOOKKEEPING.name, "iceberg-writer", "offsets_regressed"),
        (BROKEN_BOOKKEEPING.name, "iceberg-writer", "row_above_offsets"),
    ]
    result = check(Ledger("x"), reader.read(), name="audit", sources=[reader.source], anomalies=found)
    assert "2 exactly-once bookkeeping broken (iceberg-writer)" in result.remarks()
