"""A stalled pipeline is a hang, not a loss: an acknowledged record still upstream, that nothing downstream has
claimed, is reported as not yet written when the bounded wait ends (seen in CI: a writer group that wrote
nothing in 60 s under load was judged DATA_LOSS for 4,260 trades still on the topic)."""

from __future__ import annotations

from k2.chaos.checker import Observed, Unreadable, check
from k2.chaos.ledger import Ledger
from k2.chaos.outcome import Outcome, classify_with_reason
from k2.chaos.report import RunReport, ScenarioResult
from k2.chaos.report.html import render_html

TOPIC, LAKE = "kafka:trades", "iceberg:trades"


def _acked(n: int) -> Ledger:
    ledger = Ledger("t")
    for i in range(n):
        ledger.invoke(f"T-{i}", group="BTC-USD", seq=i, t=100.0 + i)
        ledger.ack(f"T-{i}", partition=0, offset=i, t=100.5 + i)
    return ledger


def _on_topic(n: int) -> list[Observed]:
    return [Observed(f"T-{i}", "BTC-USD", i, TOPIC, (0, i)) for i in range(n)]


def test_records_shown_still_upstream_are_undrained_and_the_outcome_is_hang() -> None:
    ledger = _acked(4)
    in_lake = [Observed("T-0", "BTC-USD", 0, LAKE), Observed("T-1", "BTC-USD", 1, LAKE)]
    result = check(ledger, _on_topic(4) + in_lake, name="s", sources=[TOPIC, LAKE], undrained={LAKE: {"T-2", "T-3"}})
    assert [x.key for x in result.undrained] == ["T-2", "T-3"] and result.lost == []
    assert not result.data_loss and "undrained" in result.violations
    assert "NOT YET WRITTEN (stalled) 2" in result.summary()
    assert [x["key"] for x in result.to_dict()["undrained"]] == ["T-2", "T-3"]
    outcome, reason = classify_with_reason(False, AssertionError("check failed"), False, result)
    assert outcome is Outcome.HANG and "pipeline stalled" in reason and "T-2" in reason


def test_without_that_evidence_the_same_records_are_lost() -> None:
    ledger = _acked(4)
    in_lake = [Observed("T-0", "BTC-USD", 0, LAKE)]
    result = check(ledger, _on_topic(4) + in_lake, name="s", sources=[TOPIC, LAKE], undrained={LAKE: {"T-3"}})
    assert [x.key for x in result.lost] == ["T-1", "T-2"] and [x.key for x in result.undrained] == ["T-3"]
    assert classify_with_reason(False, None, False, result)[0] is Outcome.DATA_LOSS  # a real loss wins


def test_undrained_never_excuses_a_record_missing_upstream_or_unreadable() -> None:
    ledger = _acked(3)
    garbled = Unreadable(TOPIC, "trades", 0, 1, "SerializationError: unknown magic byte", 10)
    observed = [Observed("T-0", "BTC-USD", 0, TOPIC, (0, 0)), Observed("T-0", "BTC-USD", 0, LAKE)]
    result = check(ledger, observed, name="s", sources=[TOPIC, LAKE], unreadable=[garbled],
                   undrained={LAKE: {"T-2"}})  # fmt: skip
    lost = {(x.key, x.source) for x in result.lost}
    assert lost == {("T-1", TOPIC), ("T-2", TOPIC), ("T-1", LAKE)}  # unreadable or gone upstream: lost
    assert [(x.key, x.source) for x in result.undrained] == [("T-2", LAKE)]
    assert classify_with_reason(False, None, False, result)[0] is Outcome.DATA_LOSS


def test_the_html_report_lists_the_records_not_yet_written() -> None:
    ledger = _acked(2)
    result = check(ledger, _on_topic(2), name="s", sources=[TOPIC, LAKE], undrained={LAKE: {"T-0", "T-1"}})
    outcome, reason = classify_with_reason(False, None, False, result)
    scenario = ScenarioResult.build("s", outcome, ledger=ledger, check=result, reason=reason)
    html = render_html(RunReport(seed=1, started_at=1.0, finished_at=2.0, scenarios=[scenario]))
    assert "Not yet written (stalled)" in html and "T-1 @ iceberg:trades" in html
