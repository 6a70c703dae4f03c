"""The verdict's precedence and attribution, and the report files, from synthetic runs (no services)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from k2.chaos.checker import check
from k2.chaos.findings import Observed
from k2.chaos.ledger import Ledger
from k2.chaos.outcome import Outcome
from k2.explore.errors import ExploreError
from k2.explore.files import prepare_dir, read_json, write_atomic
from k2.explore.html import render_html
from k2.explore.report import load_report, report_dict
from k2.explore.verdict import Hang, judge

from .helpers import kill, schedule_of

KAFKA, ICEBERG = "kafka:t", "iceberg:trades"


def ledger_of(n: int) -> Ledger:
    ledger = Ledger("t")
    for i in range(n):
        ledger.invoke(f"T-{i}", group="BTC-USD", seq=i)
        ledger.ack(f"T-{i}", partition=0, offset=i)
    return ledger


def checked(n: int, on_topic: list[int], in_iceberg: list[int]) -> object:
    observed = [Observed(f"T-{i}", "BTC-USD", i, KAFKA, (0, i)) for i in on_topic]
    observed += [Observed(f"T-{i}", "BTC-USD", i, ICEBERG) for i in in_iceberg]
    return check(ledger_of(n), observed, name="t", sources=[KAFKA, ICEBERG], ordered=[KAFKA], ack_positions=[KAFKA])


def verdict(
    result: object,
    *,
    caught_up: bool = True,
    hangs: list[Hang] | None = None,
    crashes: list[str] | None = None,
    aborted: str | None = None,
):  # type: ignore[no-untyped-def]
    return judge(result, caught_up=caught_up, kafka_source=KAFKA, hangs=hangs or [], crashes=crashes or [],
                 aborted=aborted)  # fmt: skip


def test_clean_run_passes() -> None:
    v = verdict(checked(5, [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]))
    assert (v.outcome, v.signature) == (Outcome.PASS, "pass")


def test_lost_by_the_writers_when_they_committed_past_it() -> None:
    v = verdict(checked(5, [0, 1, 2, 3, 4], [0, 1, 2]))
    assert (v.outcome, v.signature) == (Outcome.DATA_LOSS, "data_loss:lost")
    assert "never reached Iceberg although the writers committed past them" in v.reason


def test_missing_from_iceberg_while_writers_are_behind_is_a_hang_not_a_loss() -> None:
    v = verdict(checked(5, [0, 1, 2, 3, 4], [0, 1, 2]), caught_up=False)
    assert (v.outcome, v.signature) == (Outcome.HANG, "hang:drain")


def test_acknowledged_but_never_on_the_topic_is_lost_by_the_broker_with_the_evidence_beside_it() -> None:
    result = checked(5, [0, 1, 2, 4], [0, 1, 2, 4])  # T-3 acknowledged at (0, 3): nowhere to be found
    v = judge(result, caught_up=True, kafka_source=KAFKA, hangs=[], crashes=[], aborted=None, topic={(0, 3): "X-9"})
    assert (v.outcome, v.signature) == (Outcome.DATA_LOSS, "data_loss:lost_by_broker")
    assert "the broker acknowledged what it did not keep" in v.reason
    [anomaly] = v.anomalies
    assert anomaly["kind"] == "broker_lost_acknowledged" and anomaly["subject"] == "T-3"
    assert anomaly["evidence"] == {"acknowledged_at": [0, 3], "found_at": None, "record_at_that_offset": "X-9"}
    assert "anomalies beside it: 1 acknowledged, then not kept by the broker (kafka)" in v.reason


def test_acknowledged_past_where_the_topic_read_stopped_is_not_blamed_on_the_broker() -> None:
    # The read back ended at its deadline at offset 2 (a slow broker); T-3 and T-4 were acknowledged at 3 and 4
    # and the writers had not committed them: unseen, not seen missing. A HANG at the drain, not a broker loss.
    result = checked(5, [0, 1, 2], [0, 1, 2])
    read = {(0, i): f"T-{i}" for i in range(3)}
    v = judge(result, caught_up=False, kafka_source=KAFKA, hangs=[], crashes=[], aborted=None, topic=read)
    assert (v.outcome, v.signature) == (Outcome.HANG, "hang:drain"), v.reason
    assert [a["kind"] for a in v.anomalies] == ["topic_read_short"]
    assert v.anomalies[0]["evidence"] == {"records": 2, "examples": ["T-3", "T-4"], "read_to": {"0": 2}}
    # the writers committed past them and Iceberg lacks them: lost, whoever read the topic how far
    v = judge(result, caught_up=True, kafka_source=KAFKA, hangs=[], crashes=[], aborted=None, topic=read)
    assert (v.outcome, v.signature) == (Outcome.DATA_LOSS, "data_loss:lost"), v.reason
    assert "2 of them not read back: the topic read stopped short" in v.reason


def test_in_iceberg_but_not_read_back_from_the_topic_is_an_anomaly_not_a_loss() -> None:
    v = verdict(checked(5, [0, 1, 2], [0, 1, 2, 3, 4]))  # a writer read 3 and 4 from the broker: it had them
    assert v.outcome is Outcome.PASS
    assert [a["kind"] for a in v.anomalies] == ["topic_gap"] and v.anomalies[0]["evidence"]["records"] == 2


def test_duplicates_are_data_loss() -> None:
    v = verdict(checked(3, [0, 1, 2, 2], [0, 1, 2]))
    assert v.signature == "data_loss:duplicated"


def test_precedence_loss_over_hang_over_crash_over_abort() -> None:
    hang = Hang("query", 5.0, "a query has been running 12s")
    lossy = checked(3, [0, 1, 2], [0])
    assert verdict(lossy, hangs=[hang], crashes=["boom"]).outcome is Outcome.DATA_LOSS
    clean = checked(3, [0, 1, 2], [0, 1, 2])
    assert verdict(clean, hangs=[hang], crashes=["boom"]).signature == "hang:query"
    assert verdict(clean, crashes=["writer-1 died"], aborted="lag>1s").outcome is Outcome.CRASH
    graceful = verdict(clean, aborted="lag>30s for 20s held")
    assert graceful.outcome is Outcome.FAILED_GRACEFULLY and "nothing was lost" in graceful.reason


def test_a_wrong_acknowledged_offset_is_an_anomaly_beside_a_pass() -> None:
    ledger = ledger_of(2)
    ledger.ack("T-1", partition=0, offset=-1)  # the broker said "delivered" without a real offset
    observed = [Observed(f"T-{i}", "BTC-USD", i, KAFKA, (0, i)) for i in range(2)]
    observed += [Observed(f"T-{i}", "BTC-USD", i, ICEBERG) for i in range(2)]
    result = check(ledger, observed, name="t", sources=[KAFKA, ICEBERG], ack_positions=[KAFKA])
    v = verdict(result)
    assert v.outcome is Outcome.PASS and len(v.anomalies) == 1
    assert v.anomalies[0]["kind"] == "wrong_ack_offset" and "anomalies beside it" in v.reason


def test_report_round_trip_and_html_escape(tmp_path: Path) -> None:
    schedule = schedule_of(kill(0, "writer-1", 4, 2))
    doc = report_dict(schedule, None, status="scheduled", context={"command": "k2 <script>alert(1)</script>"})
    paths = {"json": write_atomic(prepare_dir(tmp_path / "r"), "report.json", json.dumps(doc))}
    back_doc, back = load_report(paths["json"])
    assert back == schedule and back_doc["status"] == "scheduled"
    html = render_html({**doc, "replay": "<script>x</script>"})
    assert "<script>x" not in html and "&lt;script&gt;x" in html and "writer-1" in html


def test_report_files_are_never_written_through_links(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("keep")
    directory = prepare_dir(tmp_path / "reports")
    (directory / "report.json").symlink_to(target)
    write_atomic(directory, "report.json", "{}")
    assert target.read_text() == "keep" and not (directory / "report.json").is_symlink()


def test_reading_back_refuses_what_is_not_a_report(tmp_path: Path) -> None:
    with pytest.raises(ExploreError, match="No such file"):
        read_json(tmp_path / "missing.json")
    big = tmp_path / "big.json"
    big.write_text("[" + "1," * 100 + "1]")
    with pytest.raises(ExploreError, match="more than 10"):
        read_json(big, max_bytes=10)
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    for special in ("dir", "fifo"):  # a FIFO would block a plain open
        with pytest.raises(ExploreError, match="not a regular file"):
            read_json(tmp_path / special)
    nan = tmp_path / "nan.json"
    nan.write_text('{"a": NaN}')
    with pytest.raises(ExploreError, match="not valid JSON"):
        read_json(nan)
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    with pytest.raises(ExploreError, match="neither an explore report nor a schedule"):
        load_report(other)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a link owned by someone else")
def test_a_link_someone_else_made_is_not_followed(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    os.lchown(link, 65534, 65534)
    with pytest.raises(ExploreError, match="symlink owned by uid 65534"):
        read_json(link)
