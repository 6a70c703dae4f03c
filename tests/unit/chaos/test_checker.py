"""Checker: lost, duplicated, unexpected, reordered and uncertain operations, across several sinks."""

from __future__ import annotations

import json
import time

from k2.chaos.checker import NO_SINK, CheckResult, Observed, check, wait_drained
from k2.chaos.ledger import Ledger

TOPIC, TABLE = "trades", "iceberg.trades"


def _ledger(n: int = 6, group: str = "AAPL") -> Ledger:
    ledger = Ledger("t")
    for i in range(n):
        ledger.invoke(f"k{i}", group=group, seq=i, t=100.0 + i)
        ledger.ack(f"k{i}", partition=0, offset=i, t=100.5 + i)
    return ledger


def _topic(keys: list[int], source: str = TOPIC, group: str = "AAPL") -> list[Observed]:
    return [Observed(f"k{i}", group, i, source, pos) for pos, i in enumerate(keys)]


def test_clean() -> None:
    result = check(_ledger(), _topic([0, 1, 2, 3, 4, 5]), name="clean", ordered=[TOPIC])
    assert result.clean and not result.data_loss
    assert result.violations == []
    assert "clean" in result.summary()


def test_lost_acknowledged_is_data_loss() -> None:
    result = check(_ledger(), _topic([0, 1, 3, 5]), name="lost")
    assert {x.key for x in result.lost} == {"k2", "k4"}
    assert result.lost[0].offset is not None
    assert result.data_loss
    assert "LOST 2" in result.summary()


def test_empty_declared_sink_loses_everything() -> None:
    result = check(_ledger(3), [], name="empty", sources=[TOPIC])
    assert len(result.lost) == 3 and result.data_loss
    assert check(_ledger(1), [], name="none").sources == [NO_SINK]


def test_duplicated() -> None:
    result = check(_ledger(), _topic([0, 1, 2, 2, 3, 4, 5]), name="dup", ordered=[TOPIC])
    assert [(d.key, d.count, d.acknowledged) for d in result.duplicated] == [("k2", 2, True)]
    assert result.data_loss
    assert result.reordered == []  # a duplicate is reported once, as a duplicate


def test_unexpected() -> None:
    observed = [*_topic([0, 1, 2, 3, 4, 5]), Observed("ghost", "AAPL", 99, TOPIC, 6)]
    result = check(_ledger(), observed, name="unexpected")
    assert [u.key for u in result.unexpected] == ["ghost"]
    assert not result.data_loss and not result.clean and result.violations == ["unexpected"]


def test_reordered_only_where_order_is_promised() -> None:
    observed = _topic([0, 2, 1, 3, 4, 5])  # position order 0, 2, 1: seq 1 came after seq 2
    result = check(_ledger(), observed, name="order", ordered=[TOPIC])
    assert [(r.key, r.seq, r.after_seq) for r in result.reordered] == [("k1", 1, 2)]
    assert not result.data_loss and "reordered" in result.violations
    # the same records in a table (no order promised) are fine
    table = [o._replace(source=TABLE) for o in observed]
    assert check(_ledger(), table, name="table").clean


def test_reorder_per_group_with_tuple_positions() -> None:
    ledger = Ledger("t")
    for g, part in (("AAPL", 0), ("MSFT", 1)):
        for i in range(3):
            ledger.invoke(f"{g}{i}", group=g, seq=i, t=1.0)
            ledger.ack(f"{g}{i}", partition=part, offset=i, t=1.1)
    # interleaved across partitions is fine; order within each group is what matters
    observed = [Observed(f"{g}{i}", g, i, TOPIC, (p, i)) for i in range(3) for g, p in (("MSFT", 1), ("AAPL", 0))]
    assert check(ledger, observed, name="groups", ordered=[TOPIC]).clean


def test_unknown_and_failed_fates() -> None:
    ledger = _ledger(2)
    for key in ("u-present", "u-absent", "f-present", "f-absent", "pending"):
        ledger.invoke(key, group="AAPL", seq=None)
    ledger.unknown("u-present", "flush timed out")
    ledger.unknown("u-absent", "closed in flight")
    ledger.fail("f-present", "purged")
    ledger.fail("f-absent", "purged")
    observed = [
        *_topic([0, 1]),
        Observed("u-present", "AAPL", None, TOPIC, 2),
        Observed("f-present", "AAPL", None, TOPIC, 3),
    ]
    result = check(ledger, observed, name="fates")
    assert result.maybe_committed == ["u-present"]
    assert sorted(result.not_committed) == ["pending", "u-absent"]
    assert result.failed_but_present == ["f-present"]
    assert result.failed_absent == 1
    assert result.clean and not result.data_loss  # flagged, not data loss
    assert "failed but present 1" in result.summary()


def test_multiple_sources() -> None:
    ledger = _ledger(4)
    ledger.invoke("u", group="AAPL", seq=4)
    ledger.unknown("u", "timeout")
    observed = [*_topic([0, 1, 2, 3]), Observed("u", "AAPL", 4, TOPIC, 4), *_topic([0, 1, 3, 3], source=TABLE)]
    result = check(ledger, observed, name="pipeline", sources=[TOPIC, TABLE], ordered=[TOPIC])
    assert [(x.key, x.source) for x in result.lost] == [("k2", TABLE)]
    assert [(d.key, d.source) for d in result.duplicated] == [("k3", TABLE)]
    assert result.observed == {TABLE: 4, TOPIC: 5}
    # committed to Kafka (an independent reader saw it) but missing downstream
    assert result.partially_present == [{"key": "u", "state": "unknown", "present_in": [TOPIC], "absent_from": [TABLE]}]
    data = json.loads(json.dumps(result.to_dict(), default=str))
    assert data["data_loss"] is True and data["lost"][0]["source"] == TABLE


def test_mismatched_contents_and_plain_tuples() -> None:
    ledger = Ledger("t")
    ledger.invoke("a", group="AAPL", seq=1, payload_digest="abc")
    ledger.ack("a", partition=0, offset=0)
    result = check(ledger, [("a", "MSFT", 1, TOPIC, 0, "xyz")], name="mismatch")
    assert sorted(m.field for m in result.mismatched) == ["digest", "group"]
    assert "mismatched" in result.violations


def test_summary_keeps_examples_short_but_json_full() -> None:
    result = check(_ledger(50), [], name="many", sources=[TOPIC])
    assert "+45 more" in result.summary(examples=5)
    assert len(result.to_dict()["lost"]) == 50


def test_wait_drained_returns_when_everything_arrived() -> None:
    arrived: list[Observed] = []
    reads = 0

    def read() -> list[Observed]:
        nonlocal reads
        reads += 1
        if reads <= 3:
            arrived.append(Observed(f"k{reads - 1}", "AAPL", reads - 1, TOPIC, reads - 1))
        return list(arrived)

    start = time.monotonic()
    result = wait_drained(read, ["k0", "k1", "k2"], timeout=5, poll=0.01)
    assert {o.key for o in result} == {"k0", "k1", "k2"} and reads == 3
    assert time.monotonic() - start < 1


def test_wait_drained_deadline_returns_last_observation() -> None:
    calls = 0

    def read() -> list[Observed]:
        nonlocal calls
        calls += 1
        return _topic([0])

    start = time.monotonic()
    result = wait_drained(read, ["k0", "k1"], timeout=0.3, poll=0.05)
    elapsed = time.monotonic() - start
    assert [o.key for o in result] == ["k0"]
    assert 0.3 <= elapsed < 1.0 and calls >= 3


def test_wait_drained_per_source() -> None:
    observed = _topic([0, 1])  # nothing in the table yet
    result = wait_drained(lambda: observed, ["k0", "k1"], timeout=0.1, poll=0.02, sources=[TOPIC, TABLE])
    assert result == observed
    assert wait_drained(lambda: observed, _ledger(2), timeout=5, sources=[TOPIC]) == observed


def test_result_type() -> None:
    assert isinstance(check(_ledger(1), _topic([0]), name="x"), CheckResult)
