"""The seed's storage chaos scenarios: the object store (MinIO's role, `s3`), the query engine, the
catalog database, and data corruption. The Iceberg writer runs throughout; the checker reads Kafka AND
the Iceberg tables independently of the writer: nothing acknowledged may be lost or written twice.
A scenario marked `chaos_expect("failed_gracefully")` ends with the platform's typed error by design.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from k2.platform.errors import PlatformError, QueryError, RecordRejected
from k2.scenarios.sinks import read_dead_letters
from k2.scenarios.timing import within

pytestmark = [pytest.mark.chaos, pytest.mark.chaos_storage]


def produce(producer: Any, factory: Any, n: int, symbol: str | None = None) -> None:
    for _ in range(n):
        producer.produce_trade(factory(symbol))


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def written(writer: Any) -> int:
    return writer.health().rows_written


class TestMinIOFailure:
    def test_writer_buffers_through_brief_s3_outage(
        self, producer_v2: Any, trade_factory: Any, iceberg_writer: Any, chaos_minio_failure: Any, chaos_draws: Any,
        verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """Object store frozen 2-4 s (pause; the seed draws how long): the writer holds its batch and retries;
        after resume every acknowledged trade is in Iceberg exactly once."""
        pause_s = chaos_draws.uniform("pause_s", 2.0, 4.0)
        produce(producer_v2, trade_factory, 200)
        assert producer_v2.flush(30) == 0
        wait_for(lambda: written(iceberg_writer) >= 200, 60, "the baseline to reach Iceberg")
        with chaos_minio_failure(duration_seconds=pause_s, mode="pause"):
            produce(producer_v2, trade_factory, 300)
            assert producer_v2.flush(30) == 0  # Kafka keeps its own log: producing is unaffected
        verify_no_loss(iceberg=True)

    def test_extended_s3_outage_degrades_then_recovers(
        self, producer_v2: Any, trade_factory: Any, iceberg_writer: Any, chaos_minio_failure: Any, verify_no_loss: Any
    ) -> None:
        """Object store stopped 8 s: the writer reports a degraded health with a typed error naming
        storage, retries with backoff, never skips a record, and catches up after the restart."""
        produce(producer_v2, trade_factory, 100)
        assert producer_v2.flush(30) == 0
        wait_for(lambda: written(iceberg_writer) >= 100, 60, "the baseline to reach Iceberg")
        with chaos_minio_failure(duration_seconds=8, mode="stop"):
            produce(producer_v2, trade_factory, 200)
            assert producer_v2.flush(30) == 0
            wait_for(lambda: iceberg_writer.health().status != "running", 7, "the writer to notice the outage")
            health = iceberg_writer.health()
            assert isinstance(health.error, PlatformError) and str(health.error)
        verify_no_loss(iceberg=True)
        wait_for(lambda: iceberg_writer.health().status == "running", 30, "the writer to report healthy again")

    def test_s3_restart_connection_pool_recovery(
        self, producer_v2: Any, trade_factory: Any, iceberg_writer: Any, query_engine: Any, chaos_minio_failure: Any,
        verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """Object store killed and restarted: the writer and the query engine reconnect on their own
        (same instances, no restart) and queries see every trade."""
        produce(producer_v2, trade_factory, 100, "ETH-USD")
        assert producer_v2.flush(30) == 0
        wait_for(lambda: written(iceberg_writer) >= 100, 60, "the baseline to reach Iceberg")
        assert query_engine.trades("ETH-USD").num_rows == 100
        with chaos_minio_failure(duration_seconds=1, mode="kill"):
            produce(producer_v2, trade_factory, 100, "ETH-USD")
        assert producer_v2.flush(30) == 0
        verify_no_loss(iceberg=True)
        wait_for(lambda: query_engine.trades("ETH-USD").num_rows == 200, 30, "the query engine to see all trades")


class TestQueryEngineResilience:
    @pytest.mark.chaos_expect("failed_gracefully")
    def test_query_fails_typed_when_storage_unavailable(
        self, producer_v2: Any, trade_factory: Any, iceberg_writer: Any, query_engine: Any, chaos_minio_failure: Any,
        verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """Object store down for as long as the query runs: the query fails within its 10 s timeout with a
        typed error naming storage (no hang), which ends the scenario: expected outcome FAILED GRACEFULLY, the
        seed's "platform detected failure". After the restart the same engine answers again and nothing
        acknowledged is lost."""
        produce(producer_v2, trade_factory, 50, "AAPL")
        assert producer_v2.flush(30) == 0
        wait_for(lambda: written(iceberg_writer) >= 50, 60, "trades to reach Iceberg")
        query_engine.trades("AAPL", timeout=10)
        try:
            with chaos_minio_failure(duration_seconds=None, mode="stop"), within(12, "the query during the outage"):
                query_engine.vwap("MSFT", timeout=10)  # not cached: must reach storage, and cannot
        finally:  # the outage is over (restored as the error left the block): the platform must be whole again
            assert query_engine.trades("AAPL", timeout=20).num_rows == 50
            verify_no_loss(iceberg=True)

    def test_slow_storage_hits_query_timeout(
        self, producer_v2: Any, trade_factory: Any, iceberg_writer: Any, query_engine: Any, chaos_session: Any,
        verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """Every object-store response delayed 1.5 s: a query with a 1 s timeout raises QueryError (a
        timeout) instead of hanging; without the delay the same query answers."""
        from k2.chaos.faults import inject_latency

        produce(producer_v2, trade_factory, 50, "MSFT")
        assert producer_v2.flush(30) == 0
        wait_for(lambda: written(iceberg_writer) >= 50, 60, "trades to reach Iceberg")
        with inject_latency("s3", latency_ms=1500, jitter_ms=0, session=chaos_session):
            started = time.monotonic()
            with pytest.raises(QueryError, match="(?i)timed? ?out|timeout"):
                query_engine.vwap("MSFT", timeout=1.0)
            assert time.monotonic() - started < 5
        assert query_engine.vwap("MSFT", timeout=30) is not None
        verify_no_loss(iceberg=True)


class TestCatalogFailure:
    def test_catalog_outage_blocks_metadata_then_recovers(
        self, producer_v2: Any, trade_factory: Any, iceberg_writer: Any, query_engine: Any, chaos_session: Any,
        verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """Catalog database stopped 6 s: commits (metadata operations) fail with a typed error and are
        retried; queries fail typed; after the restart everything committed is there exactly once."""
        from k2.chaos.faults import service_failure

        with service_failure("postgres", duration_seconds=6, mode="stop", session=chaos_session):
            produce(producer_v2, trade_factory, 200)
            assert producer_v2.flush(30) == 0
            with pytest.raises(PlatformError):
                query_engine.trades("BTC-USD", timeout=5)
        verify_no_loss(iceberg=True)

    def test_catalog_connection_pool_exhaustion(
        self, producer_v2: Any, trade_factory: Any, iceberg_writer: Any, k2_stack: Any, verify_no_loss: Any
    ) -> None:
        """Every catalog connection taken by someone else: the writer cannot commit (typed error, retries),
        and recovers as soon as connections are released; nothing is lost."""
        uri = k2_stack.endpoints().postgres_uri
        hogs: list[Any] = []
        try:
            while len(hogs) < 250:
                try:
                    hogs.append(psycopg.connect(uri, connect_timeout=5))
                except psycopg.OperationalError as exc:
                    assert "too many" in str(exc) or "reserved" in str(exc)
                    break
            produce(producer_v2, trade_factory, 100)
            assert producer_v2.flush(30) == 0
            failing = lambda: iceberg_writer.health().consecutive_failures > 0  # noqa: E731
            wait_for(failing, 30, "the writer to hit the exhausted pool")
        finally:
            for conn in hogs:
                conn.close()
        verify_no_loss(iceberg=True)


class TestDataCorruption:
    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"price": Decimal("101.123456789")}, "price"),  # 9 places: beyond decimal(18,8)
            ({"exchange": None}, "exchange"),  # a required field missing
            ({"asset_class": "fx"}, "asset_class"),  # BTC-USD routes to crypto
        ],
        ids=["invalid_decimal_precision", "missing_required_field", "wrong_asset_class"],
    )
    def test_malformed_trade_is_rejected_to_dead_letters(
        self, producer_v2: Any, trade_factory: Any, iceberg_writer: Any, platform_config: Any, change: dict[str, Any],
        field: str, verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """A malformed trade gets a typed error naming the field, lands on the dead-letter topic with its
        reason, and the pipeline keeps going: valid trades around it all reach Iceberg."""
        produce(producer_v2, trade_factory, 20, "BTC-USD")
        bad = trade_factory("BTC-USD", **change)
        with pytest.raises(RecordRejected) as rejected:
            producer_v2.produce_trade(bad)
        assert rejected.value.field == field
        produce(producer_v2, trade_factory, 20, "BTC-USD")
        assert producer_v2.flush(30) == 0
        letters = read_dead_letters(platform_config, expected=1)
        assert [(d["field"], d["record_id"]) for d in letters] == [(field, bad["trade_id"])]
        assert letters[0]["reason"]
        verify_no_loss(iceberg=True)
