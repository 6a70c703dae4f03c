"""The checker never looks away (issue #10, part 2): unreadable records are counted and reported, an
acknowledgement that named the wrong position is an anomaly beside the verdict, and the counts add up."""

from __future__ import annotations

import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from k2.chaos.anomaly import KINDS, WRONG_ACK_OFFSET, Anomaly, AnomalyKind, register, summarize
from k2.chaos.checker import Observed, Unreadable, check
from k2.chaos.ledger import Ledger
from k2.chaos.outcome import Outcome, classify_with_reason
from k2.chaos.report import RunReport, ScenarioResult, load_json, print_summary, render_html, write_reports
from k2.chaos.report.model import accounting_problems

TOPIC = "kafka:trades"


def _acked(n: int, offsets: list[int | None] | None = None) -> Ledger:
    ledger = Ledger("t")
    for i in range(n):
        ledger.invoke(f"T-{i}", group="BTC-USD", seq=i, t=100.0 + i)
        ledger.ack(f"T-{i}", partition=0, offset=offsets[i] if offsets else i, t=100.5 + i)
    return ledger


def _read(positions: dict[int, int]) -> list[Observed]:
    return [Observed(f"T-{i}", "BTC-USD", i, TOPIC, (0, offset)) for i, offset in positions.items()]


def _scenario(result: object, ledger: Ledger) -> ScenarioResult:
    outcome, reason = classify_with_reason(True, None, False, result)  # type: ignore[arg-type]
    return ScenarioResult.build("s", outcome, ledger=ledger, check=result, reason=reason)  # type: ignore[arg-type]


def test_an_unreadable_record_is_reported_with_its_position_and_counts_as_lost_when_acknowledged() -> None:
    ledger = _acked(3)
    garbled = Unreadable(TOPIC, "trades", 0, 1, "SerializationError: unknown magic byte", 812_000)
    result = check(ledger, _read({0: 0, 2: 2}), name="u", sources=[TOPIC], unreadable=[garbled])
    assert [(x.key, x.cause) for x in result.lost] == [
        ("T-1", "unreadable at its acknowledged position: SerializationError: unknown magic byte")
    ]
    assert result.data_loss and "unreadable" in result.violations
    outcome, reason = classify_with_reason(True, None, False, result)
    assert outcome is Outcome.DATA_LOSS
    assert "1 record(s) could not be read back (e.g. trades 0/1)" in reason
    data = result.to_dict()
    assert data["unreadable"] == [
        {"source": TOPIC, "topic": "trades", "partition": 0, "offset": 1,
         "error": "SerializationError: unknown magic byte", "size": 812_000}
    ]  # fmt: skip
    assert "UNREADABLE 1 (e.g. trades 0/1)" in data["summary"]


def test_an_unreadable_record_nobody_acknowledged_is_still_an_integrity_problem() -> None:
    garbled = Unreadable(TOPIC, "trades", 2, 7, "ValueError: decodes to NoneType", 0)
    result = check(_acked(2), _read({0: 0, 1: 1}), name="u", sources=[TOPIC], unreadable=[garbled])
    assert not result.data_loss and not result.clean
    outcome, reason = classify_with_reason(True, None, False, result)
    assert outcome is Outcome.CRASH and "trades 2/7" in reason


def test_tansus_wrong_acknowledged_offsets_are_an_anomaly_beside_a_pass() -> None:
    """The case seen after a broker kill: 6 records acknowledged at offsets 0-4 (or none), really at 9274-9279."""
    ledger = _acked(8, [0, 1, 2, 3, 4, -1001, 9280, 9281])
    real = {i: 9274 + i for i in range(8)}
    result = check(ledger, _read(real), name="kill", sources=[TOPIC], ack_positions=[TOPIC])
    assert not result.data_loss and result.clean  # every record is there exactly once
    wrong = result.anomalies
    assert [a.subject for a in wrong] == [f"T-{i}" for i in range(6)]
    assert {a.kind for a in wrong} == {WRONG_ACK_OFFSET.name} and {a.party for a in wrong} == {"kafka"}
    assert wrong[0].evidence == {"acknowledged_at": [0, 0], "found_at": [[0, 9274]], "source": TOPIC}
    assert wrong[5].evidence["acknowledged_at"] is None  # acknowledged without an offset
    outcome, reason = classify_with_reason(True, None, False, result)
    assert outcome is Outcome.PASS
    assert "anomalies: 6 acknowledged with a wrong offset (kafka)" in reason and "found_at=[[0, 9274]]" in reason


def test_a_missing_record_with_a_wrong_offset_is_data_loss_and_correct_offsets_are_no_anomaly() -> None:
    result = check(_acked(3), _read({0: 0, 1: 1}), name="ok", sources=[TOPIC], ack_positions=[TOPIC])
    assert result.anomalies == [] and [x.key for x in result.lost] == ["T-2"]
    not_checked = check(_acked(2, [5, 6]), _read({0: 0, 1: 1}), name="off", sources=[TOPIC])
    assert not_checked.anomalies == []  # only sources named in ack_positions are compared


def test_anomalies_reach_report_json_html_and_terminal(tmp_path: object) -> None:
    ledger = _acked(6, [0, 1, 2, 3, 4, -1])
    result = check(ledger, _read({i: 9274 + i for i in range(6)}), name="kill", sources=[TOPIC],
                   ack_positions=[TOPIC])  # fmt: skip
    run = RunReport(seed=1, started_at=1.0, finished_at=2.0, scenarios=[_scenario(result, ledger)])
    paths = write_reports(run, tmp_path)  # type: ignore[arg-type]
    loaded = load_json(paths["json"]).scenarios[0]
    assert loaded.outcome is Outcome.PASS and len(loaded.check_anomalies) == 6
    assert loaded.check_anomalies[0]["title"] == "acknowledged with a wrong offset"
    html = render_html(run)
    assert "Third-party anomalies (6)" in html and "9274" in html and "acknowledged_at" in html
    out = io.StringIO()
    print_summary(run, Console(file=out, width=100))
    assert "ANOMALY s: 6 acknowledged with a wrong offset (kafka)" in out.getvalue()


def test_an_anomaly_kind_is_registered_once_and_round_trips() -> None:
    assert KINDS[WRONG_ACK_OFFSET.name] is WRONG_ACK_OFFSET
    assert register(WRONG_ACK_OFFSET) is WRONG_ACK_OFFSET
    try:
        register(AnomalyKind(WRONG_ACK_OFFSET.name, "something else", ""))
    except ValueError as exc:
        assert "already registered" in str(exc)
    else:
        raise AssertionError("a second meaning for one kind name was accepted")
    found = Anomaly("not_registered_yet", "explorer", "x", {"k": 1})
    assert Anomaly.from_dict(json.loads(json.dumps(found.to_dict()))) == found
    assert summarize([found, found.to_dict()]) == "2 not registered yet (explorer)"


_states = st.sampled_from(["ack", "fail", "unknown", "pending"])


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(st.tuples(_states, st.booleans(), st.booleans()), max_size=30),
    strangers=st.integers(0, 3),
)
def test_every_operation_is_classified_once_and_the_counts_add_up(
    ops: list[tuple[str, bool, bool]], strangers: int
) -> None:
    """Whatever the ledger holds and the sinks show (present, absent, twice, unreadable, foreign records)."""
    ledger, observed, unreadable = Ledger("h"), [], []
    for i, (state, present, twice) in enumerate(ops):
        key = f"T-{i}"
        ledger.invoke(key, group="G", seq=i)
        if state == "ack":
            ledger.ack(key, partition=0, offset=i)
        elif state == "fail":
            ledger.fail(key, "refused")
        elif state == "unknown":
            ledger.unknown(key, "timed out")
        if present:
            observed += [Observed(key, "G", i, TOPIC, (0, i))] * (2 if twice else 1)
        elif twice:
            unreadable.append(Unreadable(TOPIC, "trades", 0, i, "garbled"))
    observed += [Observed(f"X-{n}", "G", n, TOPIC, (1, n)) for n in range(strangers)]
    result = check(ledger, observed, name="h", sources=[TOPIC], ack_positions=[TOPIC], unreadable=unreadable)
    assert result.accounting() == []
    scenario = _scenario(result, ledger)
    assert accounting_problems(scenario.to_dict()) == []
    assert sum(scenario.counts[k] for k in ("acknowledged", "failed", "unknown", "pending")) == len(ops)


def test_counts_that_do_not_add_up_are_named() -> None:
    broken = {
        "counts": {"invoked": 5, "acknowledged": 3, "failed": 1, "unknown": 0, "pending": 0},
        "check": {"counts": {"invoked": 7, "acknowledged": 7, "failed": 0, "unknown": 0, "pending": 0},
                  "accounting": ["failed 1 != absent 0 + present 0"]},
    }  # fmt: skip
    problems = accounting_problems(broken)
    assert problems == [
        "ledger: invoked 5 != acknowledged + failed + unknown + pending",
        "checker: failed 1 != absent 0 + present 0",
        "the checker saw 7 operations, the ledger ended with 5",
    ]
