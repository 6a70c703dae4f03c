"""A stalled pipeline is judged HANG, not DATA_LOSS, on the real stack: trades acknowledged by the broker that no
writer ever takes are still on the topic and claimed by no table, so when verify_no_loss's bounded wait ends
they are "not yet written" (CI once judged 4,260 such trades DATA_LOSS when a writer group stalled under load).
The same bounded wait over trades a writer did take passes: the evidence is the tables' own offsets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCENARIO = """
import pytest

pytestmark = pytest.mark.chaos


def test_no_writer_takes_the_trades(producer_v2, trade_factory, verify_no_loss):
    for _ in range(20):
        producer_v2.produce_trade(trade_factory("BTC-USD"))
    assert producer_v2.flush(30) == 0
    verify_no_loss(timeout=3, iceberg=True)


def test_a_writer_takes_them(producer_v2, trade_factory, iceberg_writer, verify_no_loss):
    for _ in range(20):
        producer_v2.produce_trade(trade_factory("BTC-USD"))
    assert producer_v2.flush(30) == 0
    verify_no_loss(iceberg=True)
"""


def test_trades_no_writer_took_are_a_hang_with_the_records_named(tmp_path: Path, stack_dir: Path) -> None:
    (tmp_path / "test_stall.py").write_text(SCENARIO)
    reports = tmp_path / "reports"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_stall.py",
         f"--chaos-data-dir={stack_dir}", f"--chaos-report-dir={reports}"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip
    output = (done.stdout + done.stderr)[-4000:]
    assert (reports / "report.json").exists(), output
    scenarios = {s["name"]: s for s in json.loads((reports / "report.json").read_text())["scenarios"]}
    stalled, written = scenarios["test_no_writer_takes_the_trades"], scenarios["test_a_writer_takes_them"]
    assert stalled["outcome"] == "hang", stalled["reason"]
    assert "pipeline stalled" in stalled["reason"] and "20 acknowledged record(s)" in stalled["reason"]
    assert len(stalled["check"]["undrained"]) == 20 and stalled["check"]["lost"] == []
    assert written["outcome"] == "pass", written["reason"]
    assert done.returncode != 0, output
