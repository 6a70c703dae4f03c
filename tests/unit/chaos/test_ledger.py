"""Ledger: every operation recorded exactly once, safely from many threads, with a per-second timeline."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from enum import StrEnum

import pytest

from k2.chaos.ledger import Ledger, LedgerError, OpState, percentile


def test_lifecycle_and_counts() -> None:
    ledger = Ledger("t")
    ledger.invoke("a", group="AAPL", seq=1, t=100.0)
    ledger.invoke("b", group="AAPL", seq=2, t=100.5)
    ledger.invoke("c", group="MSFT", seq=1, t=101.0)
    ledger.invoke("d", group="MSFT", seq=2, t=101.0)
    op = ledger.ack("a", partition=0, offset=7, t=100.25)
    assert (op.state, op.partition, op.offset, op.latency_s) == (OpState.ACKED, 0, 7, 0.25)
    assert ledger.fail("b", RuntimeError("broker down"), t=102.0).error == "broker down"
    assert ledger.unknown("c", "flush timed out", t=103.0).state is OpState.UNKNOWN
    assert ledger.counts() == {"invoked": 4, "pending": 1, "acknowledged": 1, "failed": 1, "unknown": 1}
    assert ledger.acked_keys() == ["a"]
    assert ledger.ack_times() == [100.25]
    assert "a" in ledger and len(ledger) == 4


def test_contract_errors_and_retries() -> None:
    ledger = Ledger("t")
    with pytest.raises(LedgerError, match="never invoked"):
        ledger.ack("ghost", partition=0, offset=0)
    ledger.invoke("a", group="g", seq=1, t=1.0)
    with pytest.raises(LedgerError, match="invoked twice"):
        ledger.invoke("a", group="g", seq=1)
    ledger.fail("a", "timeout", t=2.0)
    retry = ledger.invoke("a", group="g", seq=1, t=3.0)  # a retry after a failure is allowed
    assert retry.attempts == 2 and retry.state is OpState.INVOKED
    ledger.ack("a", partition=1, offset=5, t=3.5)
    ledger.ack("a", partition=1, offset=5, t=3.6)  # the same report twice is harmless
    assert ledger.anomalies == []
    ledger.fail("a", "late error", t=4.0)  # an ack is never taken back, but the contradiction is kept
    assert ledger.get("a").state is OpState.ACKED  # type: ignore[union-attr]
    assert len(ledger.anomalies) == 1


class Status(StrEnum):
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"
    UNKNOWN = "unknown"
    REJECTED = "rejected"


@dataclass
class Event:  # the shape of the platform producer's DeliveryEvent
    record_id: str | None
    symbol: str | None
    sequence_number: int | None
    status: Status
    partition: int | None = None
    offset: int | None = None
    error: str | None = None
    enqueued_at: float = 0.0
    completed_at: float = 0.0


def test_observe_accepts_producer_events_and_mappings() -> None:
    ledger = Ledger("t")
    ledger.record(Event("T1", "AAPL", 1, Status.ACKNOWLEDGED, 0, 10, enqueued_at=10.0, completed_at=10.5))
    ledger.observe(Event("T2", "AAPL", 2, Status.UNKNOWN, error="purged in flight", enqueued_at=11.0))
    ledger.observe(Event("T3", "AAPL", 3, Status.REJECTED, error="bad price"))
    ledger.observe({"key": "Q1", "group": "MSFT", "seq": 1, "status": "ack", "partition": 1, "offset": 2})
    ledger.invoke("T4", group="AAPL", seq=4, t=12.0)
    ledger(Event("T4", "AAPL", 4, Status.ACKNOWLEDGED, 0, 11, completed_at=12.1))  # completes the invoked op
    t1 = ledger.get("T1")
    assert t1 is not None and (t1.group, t1.seq, t1.invoked_at, t1.latency_s) == ("AAPL", 1, 10.0, 0.5)
    assert ledger.get("T2").state is OpState.UNKNOWN  # type: ignore[union-attr]
    t3 = ledger.get("T3")
    assert t3 is not None and t3.state is OpState.FAILED and t3.error == "rejected: bad price"
    assert ledger.get("Q1").offset == 2  # type: ignore[union-attr]
    assert ledger.get("T4").attempts == 1  # type: ignore[union-attr]
    # a rejected record that never got a key cannot be lost: counted, not an error
    ledger.observe(Event(None, None, None, Status.REJECTED, error="not serialisable"))
    assert ledger.unkeyed_failures == 1
    with pytest.raises(LedgerError, match="no key"):
        ledger.observe(Event(None, "AAPL", 9, Status.ACKNOWLEDGED))
    with pytest.raises(LedgerError, match="status"):
        ledger.observe({"key": "x", "status": "exploded"})


def test_thread_safety() -> None:
    ledger = Ledger("threads")
    threads, per_thread = 8, 2000

    def work(n: int) -> None:
        for i in range(per_thread):
            key = f"{n}-{i}"
            ledger.invoke(key, group=str(n), seq=i)
            if i % 10 == 0:
                ledger.unknown(key, "timeout")
            else:
                ledger.ack(key, partition=n, offset=i)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    counts = ledger.counts()
    assert counts["invoked"] == threads * per_thread
    assert counts["unknown"] == threads * per_thread // 10
    assert counts["acknowledged"] == threads * per_thread * 9 // 10
    assert counts["pending"] == 0


def test_time_series_per_second() -> None:
    ledger = Ledger("series")
    for i in range(10):  # 10 ops in second 100, acked 0.01..0.10 s later
        ledger.invoke(f"a{i}", group="g", seq=i, t=100.0 + i * 0.05)
        ledger.ack(f"a{i}", partition=0, offset=i, t=100.0 + i * 0.05 + (i + 1) / 100)
    ledger.invoke("late", group="g", seq=10, t=101.2)
    ledger.ack("late", partition=0, offset=10, t=103.7)  # across a quiet second
    ledger.invoke("f", group="g", seq=11, t=103.1)
    ledger.fail("f", "boom", t=103.2)
    rows = ledger.series()
    assert [r["t"] for r in rows] == [100, 101, 102, 103]  # the quiet second is present, with zeros
    first = rows[0]
    assert (first["invoked"], first["acked"]) == (10, 10)
    assert first["ack_p50_s"] == pytest.approx(0.055)
    assert first["ack_max_s"] == pytest.approx(0.10)
    assert rows[2] == {
        "t": 102,
        "invoked": 0,
        "acked": 0,
        "failed": 0,
        "unknown": 0,
        "ack_p50_s": None,
        "ack_p95_s": None,
        "ack_p99_s": None,
        "ack_max_s": None,
    }
    assert (rows[3]["acked"], rows[3]["failed"], rows[3]["ack_p99_s"]) == (1, 1, pytest.approx(2.5))
    snap = ledger.snapshot(include_ops=True)
    assert json.loads(json.dumps(snap))["counts"]["acknowledged"] == 11
    assert snap["ops"][0]["state"] == "acknowledged"


def test_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
