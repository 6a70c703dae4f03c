"""The query engine on the embedded stack: exact VWAP and OHLCV, time ranges, outages and recovery."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from tests.integration.platform.pipeline_helpers import fresh_config, make_trade, running_stack, wait_until

from k2.platform import iceberg_tables
from k2.platform.config import PlatformConfig
from k2.platform.errors import CatalogUnavailable, QueryError, QueryTimeout, StorageUnavailable
from k2.platform.producer import MarketDataProducer
from k2.platform.query import QueryEngine
from k2.platform.validation import validate_trade
from k2.platform.writer import IcebergWriter
from k2.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack() as running:
        yield running


def random_trades(symbol: str, count: int, rng: random.Random) -> list[dict[str, Any]]:
    trades = []
    for i in range(count):
        event = T0 + timedelta(milliseconds=rng.randrange(10 * 60 * 1000))
        trades.append(
            validate_trade(
                make_trade(
                    i,
                    symbol,
                    base_us=0,
                    price=Decimal(rng.randrange(1, 10**12)).scaleb(-8) + 50_000,
                    quantity=Decimal(rng.randrange(1, 10**9)).scaleb(-8),
                    event_timestamp=event,
                    ingest_timestamp=event + timedelta(milliseconds=5),
                )
            )
        )
    return trades


@pytest.fixture(scope="module")
def loaded(stack: LocalStack) -> tuple[PlatformConfig, dict[str, list[dict[str, Any]]]]:
    """Trades written straight into Iceberg in three commits (the writer has its own tests)."""
    config = fresh_config(stack)
    rng = random.Random(7)
    data = {"BTC-USD": random_trades("BTC-USD", 6000, rng), "ETH-USD": random_trades("ETH-USD", 1500, rng)}
    rows = [t for trades in data.values() for t in trades]
    rng.shuffle(rows)
    catalog = iceberg_tables.build_catalog(config)
    for part in range(3):
        buffer = iceberg_tables.TableBuffer("trade")
        for offset, trade in enumerate(rows[part::3]):
            buffer.add(trade, part, offset)
        table = iceberg_tables.open_table(catalog, config.namespace, "trade", "crypto", create=True)
        iceberg_tables.write_exactly_once(lambda table=table: table.refresh(), buffer, "t", {part: buffer.size})
    catalog.engine.dispose()
    return config, data


def expected_vwap(trades: list[dict[str, Any]]) -> Decimal | None:
    notional = sum((t["price"] * t["quantity"] for t in trades), Decimal(0))
    volume = sum((t["quantity"] for t in trades), Decimal(0))
    return (notional / volume).quantize(Decimal("1e-8"), rounding=ROUND_HALF_EVEN) if volume else None


def in_range(trades: list[dict[str, Any]], start: datetime, end: datetime) -> list[dict[str, Any]]:
    return [t for t in trades if start <= t["event_timestamp"] < end]


def test_vwap_equals_an_independent_decimal_computation(loaded: tuple[PlatformConfig, dict[str, Any]]) -> None:
    config, data = loaded
    with QueryEngine(config, timeout=30) as engine:
        for symbol, trades in data.items():
            assert engine.vwap(symbol) == expected_vwap(trades)
            start, end = T0 + timedelta(minutes=2), T0 + timedelta(minutes=7, seconds=30)
            assert engine.vwap(symbol, start, end) == expected_vwap(in_range(trades, start, end))
        assert engine.vwap("SOL-USD") is None  # no rows for that symbol
        assert engine.vwap("AAPL") is None  # no equities table at all


def test_ohlcv_bars_match_the_trades(loaded: tuple[PlatformConfig, dict[str, Any]]) -> None:
    config, data = loaded
    trades = sorted(data["BTC-USD"], key=lambda t: (t["event_timestamp"], t["sequence_number"]))
    buckets: dict[datetime, list[dict[str, Any]]] = defaultdict(list)
    for trade in trades:
        buckets[trade["event_timestamp"].replace(second=0, microsecond=0)].append(trade)
    with QueryEngine(config, timeout=30) as engine:
        bars = engine.ohlcv("BTC-USD", T0, T0 + timedelta(hours=1), timedelta(minutes=1)).to_pylist()
    assert [bar["bucket"] for bar in bars] == sorted(buckets)
    for bar in bars:
        group = buckets[bar["bucket"]]
        prices = [t["price"] for t in group]
        assert (bar["open"], bar["close"]) == (prices[0], prices[-1])
        assert (bar["high"], bar["low"]) == (max(prices), min(prices))
        assert bar["volume"] == sum(t["quantity"] for t in group)
        assert bar["trades"] == len(group)


def test_trades_by_symbol_and_time_range(loaded: tuple[PlatformConfig, dict[str, Any]]) -> None:
    config, data = loaded
    start, end = T0 + timedelta(minutes=1), T0 + timedelta(minutes=3)
    want = sorted(in_range(data["ETH-USD"], start, end), key=lambda t: (t["event_timestamp"], t["sequence_number"]))
    with QueryEngine(config, timeout=30) as engine:
        got = engine.trades("ETH-USD", start, int((end - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)))
        assert [r["trade_id"] for r in got.to_pylist()] == [t["trade_id"] for t in want]
        assert engine.trades("ETH-USD", start, end, limit=5).num_rows == 5
        with pytest.raises(QueryError, match="matches no routing rule"):
            engine.trades("not a symbol")


def test_produced_trades_become_queryable_through_the_writer(stack: LocalStack) -> None:
    config = fresh_config(stack)
    trades = [make_trade(i, "AAPL") for i in range(500)]
    writer = IcebergWriter(config, group_id="e2e", batch_max_seconds=0.2).start()
    try:
        with MarketDataProducer(config) as producer, QueryEngine(config, timeout=10) as engine:
            for trade in trades:
                producer.produce_trade(trade)
            assert producer.flush(30) == 0
            want = expected_vwap([validate_trade(t) for t in trades])
            assert wait_until(lambda: engine.vwap("AAPL") == want, 60, "the trades to be queryable")
    finally:
        writer.stop()


@pytest.mark.parametrize(("service", "error"), [("s3", StorageUnavailable), ("postgres", CatalogUnavailable)])
def test_queries_fail_typed_during_an_outage_and_work_again_after(
    loaded: tuple[PlatformConfig, dict[str, Any]], stack: LocalStack, service: str, error: type[Exception]
) -> None:
    config, data = loaded
    with QueryEngine(config, timeout=8) as engine:
        want = expected_vwap(data["BTC-USD"])
        assert engine.vwap("BTC-USD") == want
        stack.stop_service(service)
        try:
            with pytest.raises(error, match="Remedy"):
                engine.vwap("BTC-USD")
        finally:
            stack.start_service(service)
        assert wait_until(lambda: _try_vwap(engine, "BTC-USD") == want, 30, "the same engine to answer again")


def test_a_frozen_object_store_times_out_and_the_engine_recovers(
    loaded: tuple[PlatformConfig, dict[str, Any]], stack: LocalStack
) -> None:
    config, data = loaded
    pid = stack.state().services["s3"].process.pid
    with QueryEngine(config, timeout=2) as engine:
        want = expected_vwap(data["ETH-USD"])
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(QueryTimeout, match="did not finish within 2.0s"):
                engine.vwap("ETH-USD")
            assert time.monotonic() - started < 4
        finally:
            os.kill(pid, signal.SIGCONT)
        assert wait_until(lambda: _try_vwap(engine, "ETH-USD") == want, 30, "answers after the freeze")


def _try_vwap(engine: QueryEngine, symbol: str) -> Decimal | None:
    try:
        return engine.vwap(symbol)
    except (StorageUnavailable, CatalogUnavailable, QueryTimeout):
        return None
