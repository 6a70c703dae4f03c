"""The seed's planned clock chaos: time jumps (an NTP step forward and back), a DST transition, and a
producer whose clock is behind the broker's. Clocks move through libfaketime (k2.chaos.faketime): the
catalog database and K2's services start armed; a writer, a producer and a reader run here as processes
armed in their own clock domains. Kafka (tansu) and S3 (weed) are static binaries whose clocks
K2 cannot move: their clients' clocks move instead, which is what a skewed host looks like to them.

Expected outcomes (each scenario asserts its own; the checker reads Kafka and Iceberg throughout):
- writer and catalog 30 min ahead (beyond SeaweedFS's ~15 min signing window for raw S3 requests): no
  storage error reaches the writer (the AWS SDK in pyarrow signs with a corrected time after the server
  refuses a skewed request) and everything is written; but Iceberg stamps those snapshots 30 min in the
  future, and after the step back the next snapshot is OLDER than its parent: snapshot history is not
  monotonic and nothing rejects it (time travel "as of" a time in that half hour is ambiguous).
- DST: a reader (the query engine) on Europe/London time with its clock at the autumn switch (01:00-02:00
  local happens twice): bars and partitions are UTC, so the repeated local hour is neither merged nor
  split and every trade is in exactly one hourly and one daily bar.
- producer 10 min behind the broker: its trades are stamped 10 min in the past, which validation's window
  accepts (only the future is bounded): all are written, with their (skewed) event times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from k2.scenarios.sinks import IcebergReader

pytestmark = [pytest.mark.chaos, pytest.mark.chaos_clock]

SYMBOL = "ETH-USD"


@pytest.fixture
def armed_process(k2_stack: Any, platform_config: Any, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """armed_process(domain, argv, tz=None): a platform process in clock domain `domain` (writer, producer,
    reader), with the stack's settings; stopped (SIGTERM, then SIGKILL) at the end. Returns (Popen, log)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(domain: str, argv: list[str], tz: str | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        env = {**os.environ, **platform_config.as_env(), **k2_stack.clock_env(domain)}
        if tz:
            env["TZ"] = tz
        log = tmp_path / f"{domain}-{len(started)}.log"
        with open(log, "wb") as out:
            started.append(subprocess.Popen([sys.executable, *argv], env=env, stdout=out, stderr=subprocess.STDOUT))
        return started[-1], log

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def writer_process(armed_process: Callable[..., Any], platform_config: Any) -> Callable[..., Any]:
    """writer_process(tz=None): the platform's Iceberg writer as a process in the `writer` clock domain."""

    def start(tz: str | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        argv = ["-m", "k2.platform.writer", "--group", f"writer-{platform_config.namespace}", "--assign-all",
                "--batch-seconds", "0.3"]  # fmt: skip
        return armed_process("writer", argv, tz)

    return start


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def in_iceberg(config: Any) -> int:
    return len(IcebergReader(config).read())


def produce(producer: Any, factory: Any, n: int, **fields: Any) -> None:
    for _ in range(n):
        producer.produce_trade(factory(SYMBOL, **fields))
    assert producer.flush(30) == 0


def snapshot_times(config: Any) -> list[int]:
    """Commit times (ms) of the trades table's snapshots, in commit order (each parent before its child)."""
    from k2.platform.iceberg_tables import build_catalog, open_table

    table = open_table(build_catalog(config), config.namespace, "trade", "crypto", create=False)
    assert table is not None
    return [entry.timestamp_ms for entry in table.metadata.snapshot_log]


class TestTimeJumps:
    def test_ntp_step_forward_and_back_on_the_writer_and_the_catalog(
        self, producer_v2: Any, trade_factory: Any, platform_config: Any, writer_process: Callable[..., Any],
        chaos_clock_skew: Any, verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """Writer and catalog 30 min ahead (an NTP step), then stepped back: every trade is written once, and
        Iceberg's snapshot history runs backwards at the step back (the snapshot after it is older than its
        parent). Nothing acknowledged is lost or written twice."""
        writer, _ = writer_process()
        with chaos_clock_skew("writer", 1800), chaos_clock_skew("postgres", 1800):
            produce(producer_v2, trade_factory, 30)
            wait_for(lambda: in_iceberg(platform_config) >= 30, 60, "trades written by the skewed writer")
            ahead = snapshot_times(platform_config)[-1]
        assert ahead / 1000 - time.time() > 1700, "the writer's clock did not reach Iceberg's snapshot times"
        produce(producer_v2, trade_factory, 30)
        wait_for(lambda: in_iceberg(platform_config) >= 60, 60, "trades written after the step back")
        history = snapshot_times(platform_config)
        assert history[-1] < ahead, f"expected the snapshot after the step back to be older: {history}"
        assert writer.poll() is None
        verify_no_loss(iceberg=True)


class TestDaylightSaving:
    def test_autumn_switch_bars_and_partitions_stay_utc(
        self, producer_v2: Any, trade_factory: Any, platform_config: Any, lake_writer: Any,
        armed_process: Callable[..., Any], chaos_clock_skew: Any, verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """A reader on Europe/London time on 2026-10-25, when BST ends at 01:00 UTC and local 01:00-02:00
        happens twice; its clock at the end of the second 01:xx. Trades every 10 min from 23:00 to 01:50 UTC
        (local 00:00 BST .. 01:50 GMT): the hourly bars are the UTC hours (the two local 01:xx hours neither
        merged nor split), the daily bars the UTC days, the Iceberg day partitions the UTC dates."""
        switch = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
        times = [switch - timedelta(hours=2) + timedelta(minutes=10 * i) for i in range(18)]  # 23:00 .. 01:50
        for moment in times:
            micros = int(moment.timestamp() * 1_000_000)
            producer_v2.produce_trade(trade_factory(SYMBOL, event_timestamp=micros, ingest_timestamp=micros))
        assert producer_v2.flush(30) == 0
        wait_for(lambda: in_iceberg(platform_config) >= len(times), 60, "the trades in Iceberg")
        with chaos_clock_skew("reader", jump_to=switch + timedelta(minutes=59, seconds=30)):
            bars = read_bars(armed_process, platform_config, times[0], times[-1] + timedelta(minutes=1))
        hourly = {bar["bucket"]: bar["trades"] for bar in bars["1h"]}
        expected = {"2026-10-24T23:00:00Z": 6, "2026-10-25T00:00:00Z": 6, "2026-10-25T01:00:00Z": 6}
        assert hourly == expected, f"hourly bars on the London clock: {hourly}"
        assert {bar["bucket"]: bar["trades"] for bar in bars["1d"]} == {
            "2026-10-24T00:00:00Z": 6, "2026-10-25T00:00:00Z": 12,
        }  # fmt: skip
        assert bars["partitions"] == ["2026-10-24", "2026-10-25"]
        verify_no_loss(iceberg=True)


READER = """
import json, sys
from datetime import datetime, timedelta
from k2.platform.config import PlatformConfig
from k2.platform.iceberg_tables import build_catalog, open_table
from k2.platform.query import QueryEngine
symbol, start, end = sys.argv[1], datetime.fromisoformat(sys.argv[2]), datetime.fromisoformat(sys.argv[3])
config = PlatformConfig.from_env(kafka_bootstrap="-", schema_registry_url="-")
out = {}
with QueryEngine(config, timeout=30) as engine:
    for name, interval in (("1h", timedelta(hours=1)), ("1d", timedelta(days=1))):
        bars = engine.ohlcv(symbol, start, end, interval).to_pylist()
        out[name] = [{"bucket": b["bucket"].astimezone().isoformat(), "utc": b["bucket"].timestamp(),
                      "trades": b["trades"]} for b in bars]
table = open_table(build_catalog(config), config.namespace, "trade", "crypto", create=False)
out["partitions"] = sorted({f.file.partition[0] for f in table.scan().plan_files()} if table else [])
print(json.dumps(out))
"""


def read_bars(armed_process: Callable[..., Any], config: Any, start: datetime, end: datetime) -> dict[str, Any]:
    """Hourly and daily bars and the partition dates, computed by a reader process on the London clock."""
    proc, log = armed_process("reader", ["-c", READER, SYMBOL, start.isoformat(), end.isoformat()],
                              "Europe/London")  # fmt: skip
    assert proc.wait(120) == 0, log.read_text(errors="replace")[-2000:]
    result: dict[str, Any] = json.loads(log.read_text().strip().splitlines()[-1])
    for name in ("1h", "1d"):
        result[name] = [{"bucket": _utc(b["utc"]), "trades": b["trades"]} for b in result[name]]
    days = [datetime(1970, 1, 1, tzinfo=UTC).date() + timedelta(days=int(p)) for p in result["partitions"]]
    result["partitions"] = [d.isoformat() for d in days]
    return result


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


class TestProducerClock:
    def test_producer_behind_the_broker_is_accepted_with_its_own_times(
        self, chaos_ledger: Any, platform_config: Any, armed_process: Callable[..., Any], lake_writer: Any,
        chaos_clock_skew: Any, verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """A producer process 10 min behind the broker (which keeps the true time): its trades carry event
        times 10 min in the past, validation's window accepts them (only the future is bounded), every
        acknowledged trade reaches Kafka and Iceberg once, with the producer's (skewed) times."""
        with chaos_clock_skew("producer", -600):
            proc, log = armed_process("producer", ["-m", "k2.scenarios.produce_process", SYMBOL, "40",
                                                   uuid.uuid4().hex[:6]])  # fmt: skip
            assert proc.wait(120) == 0, log.read_text(errors="replace")[-2000:]
        events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        replay_into(chaos_ledger, events)
        stamped = {e["key"]: e["event_timestamp"] for e in events if e["state"] == "invoked"}
        acked = [e["outcome"]["record_id"] for e in events
                 if e["state"] == "outcome" and e["outcome"]["status"] == "acknowledged"]  # fmt: skip
        assert len(acked) == 40
        lag = [time.time() - stamped[key] / 1e6 for key in acked]
        assert all(590 < seconds < 720 for seconds in lag), f"event times not 10 min behind: {lag[:3]}"
        wait_for(lambda: in_iceberg(platform_config) >= 40, 60, "the trades in Iceberg")
        verify_no_loss(iceberg=True)


def replay_into(ledger: Any, events: list[dict[str, Any]]) -> None:
    """Enter what the producer process recorded (invoke before send, then the outcome) in the ledger."""
    for event in events:
        if event["state"] == "invoked":
            ledger.invoke(event["key"], group=event["symbol"], seq=event["seq"])
    for event in events:
        if event["state"] != "invoked":
            ledger.observe(event["outcome"])
