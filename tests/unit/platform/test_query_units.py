"""QueryEngine without services: exact results on a local catalog, deadlines, typed errors, and rebuilding
the catalog after a failure (so a recovered service is used without a restart)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc
from pyiceberg.catalog.sql import SqlCatalog

from k2.platform import iceberg_tables as tables
from k2.platform import query as query_module
from k2.platform.config import PlatformConfig
from k2.platform.errors import CatalogUnavailable, QueryError, QueryTimeout, StorageUnavailable
from k2.platform.query import QueryEngine
from k2.platform.validation import validate_trade

CONFIG = PlatformConfig(
    kafka_bootstrap="127.0.0.1:9",
    schema_registry_url="http://127.0.0.1:9",
    s3_endpoint="http://127.0.0.1:9",
    s3_access_key="k",
    s3_secret_key="s",
    s3_bucket="warehouse",
    postgres_uri="postgresql://k2:pw@127.0.0.1:9/k2",
)
T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def trade(i: int, price: str, quantity: str, seconds: int, symbol: str = "ETH-USD") -> dict[str, Any]:
    at = T0 + timedelta(seconds=seconds)
    return validate_trade(
        {
            "trade_id": f"T-{i}", "symbol": symbol, "exchange": "COINBASE", "asset_class": "crypto",
            "price": Decimal(price), "quantity": Decimal(quantity), "side": "BUY", "event_timestamp": at,
            "ingest_timestamp": at, "sequence_number": i,
        }
    )  # fmt: skip


TRADES = [
    trade(0, "100.00000001", "0.5", 5),
    trade(1, "101.5", "2.25", 30),
    trade(2, "99.99999999", "1", 30),  # same instant as T-1: sequence decides the close
    trade(3, "102", "0.00000003", 75),
    trade(4, "98.12345678", "3", 130),
    trade(5, "5000", "1", 10, symbol="BTC-USD"),
]


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> QueryEngine:
    catalog = SqlCatalog("unit", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}/warehouse")
    table = tables.open_table(catalog, CONFIG.namespace, "trade", "crypto", create=True)
    buffer = tables.TableBuffer("trade")
    for offset, record in enumerate(TRADES):
        buffer.add(record, 0, offset)
    tables.write_exactly_once(lambda: table, buffer, "t", {0: len(TRADES)})
    monkeypatch.setattr(query_module.tables, "build_catalog", lambda config: catalog)
    with QueryEngine(CONFIG, timeout=10) as running:
        yield running


def vwap_of(trades: list[dict[str, Any]]) -> Decimal:
    notional = sum(t["price"] * t["quantity"] for t in trades)
    return (notional / sum(t["quantity"] for t in trades)).quantize(Decimal("1e-8"), rounding=ROUND_HALF_EVEN)


def test_vwap_is_exact_and_respects_the_half_open_range(engine: QueryEngine) -> None:
    eth = TRADES[:5]
    assert engine.vwap("ETH-USD") == vwap_of(eth)
    assert engine.vwap("ETH-USD", T0 + timedelta(seconds=30), T0 + timedelta(seconds=130)) == vwap_of(eth[1:4])
    assert engine.vwap("ETH-USD", T0 + timedelta(hours=1)) is None
    assert engine.vwap("BTC-USD") == Decimal("5000.00000000")
    assert engine.vwap("AAPL") is None  # its table does not exist


def test_ohlcv_orders_by_time_then_sequence(engine: QueryEngine) -> None:
    bars = engine.ohlcv("ETH-USD", T0, T0 + timedelta(minutes=5), timedelta(minutes=1)).to_pylist()
    assert [(b["bucket"] - T0) // timedelta(minutes=1) for b in bars] == [0, 1, 2]
    first = bars[0]
    assert (first["open"], first["close"]) == (Decimal("100.00000001"), Decimal("99.99999999"))
    assert (first["high"], first["low"], first["volume"], first["trades"]) == (
        Decimal("101.5"), Decimal("99.99999999"), Decimal("3.75"), 3,
    )  # fmt: skip
    assert bars[1]["volume"] == Decimal("0.00000003")
    with pytest.raises(QueryError, match="interval must be positive"):
        engine.ohlcv("ETH-USD", interval=timedelta(0))


def test_trades_are_filtered_sorted_and_limited(engine: QueryEngine) -> None:
    rows = engine.trades("ETH-USD", T0 + timedelta(seconds=30)).to_pylist()
    assert [r["trade_id"] for r in rows] == ["T-1", "T-2", "T-3", "T-4"]
    assert engine.trades("ETH-USD", limit=2).column("trade_id").to_pylist() == ["T-0", "T-1"]
    with pytest.raises(QueryError, match="naive"):
        engine.trades("ETH-USD", datetime(2026, 1, 1))
    with pytest.raises(QueryError, match="routing rule"):
        engine.vwap("what?")


def test_a_hung_dependency_becomes_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    monkeypatch.setattr(query_module.tables, "build_catalog", lambda config: release.wait(5))
    with QueryEngine(CONFIG, timeout=0.3) as engine, pytest.raises(QueryTimeout, match="within 0.3s"):
        engine.vwap("ETH-USD")
    release.set()


def test_a_catalog_failure_is_typed_and_the_next_call_builds_a_fresh_catalog(
    engine: QueryEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    working = query_module.tables.build_catalog(CONFIG)

    class DeadCatalog:
        def load_table(self, identifier: str) -> Any:
            raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("connection refused"))

    builds = iter([DeadCatalog(), working])
    monkeypatch.setattr(query_module.tables, "build_catalog", lambda config: next(builds))
    engine._reset()
    with pytest.raises(CatalogUnavailable, match="Remedy"):
        engine.vwap("ETH-USD")
    assert engine.vwap("ETH-USD") == vwap_of(TRADES[:5])  # the dead catalog was dropped and rebuilt


DROPPED = (
    "When reading information for key 'k' in bucket 'warehouse': AWS Error NETWORK_CONNECTION during HeadObject "
    "operation: curlCode: 52, Server returned nothing (no headers, no data)"
)


def catalog_failing_with(*errors: BaseException, then: Any) -> Any:
    """build_catalog replacement: each of `errors` once (one per build), then the working catalog."""
    queue = list(errors)

    class Failing:
        def __init__(self, error: BaseException) -> None:
            self.error = error

        def load_table(self, identifier: str) -> Any:
            raise self.error

    builds = iter([*(Failing(e) for e in queue), *([then] * 10)])
    return lambda config: next(builds)


def test_a_connection_the_store_dropped_is_retried_once_on_fresh_connections(
    engine: QueryEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    working = query_module.tables.build_catalog(CONFIG)
    monkeypatch.setattr(query_module.tables, "build_catalog", catalog_failing_with(OSError(DROPPED), then=working))
    engine._reset()
    assert engine.vwap("ETH-USD") == vwap_of(TRADES[:5])


def test_a_store_that_stays_down_fails_typed_after_the_one_retry(
    engine: QueryEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    working = query_module.tables.build_catalog(CONFIG)
    refused = OSError("AWS Error NETWORK_CONNECTION during HeadObject operation: curlCode: 7, Couldn't connect")
    dropped_twice = catalog_failing_with(OSError(DROPPED), OSError(DROPPED), then=working)
    refused_once = catalog_failing_with(refused, then=working)  # not a dropped connection: no retry at all
    for failing, code in ((dropped_twice, "curlCode: 52"), (refused_once, "curlCode: 7")):
        monkeypatch.setattr(query_module.tables, "build_catalog", failing)
        engine._reset()
        with pytest.raises(StorageUnavailable, match=code):
            engine.vwap("ETH-USD")
