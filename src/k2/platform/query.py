"""The query engine: DuckDB over Arrow from pyiceberg scans of the lakehouse tables.

    engine = QueryEngine(PlatformConfig.from_endpoints(ep), timeout=10)
    engine.trades("BTC-USD", start, end)            # pyarrow.Table, ordered by event time
    engine.ohlcv("BTC-USD", start, end, timedelta(minutes=1))
    engine.vwap("BTC-USD", start, end)              # Decimal, exact: sum(price*qty) / sum(qty)

Why it is built this way:
- Every call runs on a small worker pool with a deadline: a frozen S3 or catalog turns into
  `QueryTimeout`, never a hung caller; an outage into `StorageUnavailable` / `CatalogUnavailable`.
- The catalog is created lazily and thrown away after any failure, so once S3 or PostgreSQL is back the
  next call works without restarting anything.
- Scans push the symbol and time range down to pyiceberg (partition and file pruning) and read only the
  needed columns; DuckDB does the aggregation on the Arrow data without copying it.
- Aggregates (VWAP, OHLCV) keep the Arrow data of each data file they read, per symbol and columns, in a
  byte-bounded LRU: Iceberg data files never change once committed, so a cached file is always right and a
  new commit only adds files to read. Scan plans are cached per table metadata file (one per commit).
- Decimals stay decimals: DECIMAL(18,8) * DECIMAL(18,8) overflows in DuckDB, so one side is cast to
  DECIMAL(38,8); the VWAP division is done in Python's Decimal and rounded half-even to 8 places.
Time ranges are [start, end): aware datetimes or int microseconds since the epoch; None = unbounded.
"""

from __future__ import annotations

import decimal
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import And, BooleanExpression, EqualTo, GreaterThanOrEqual, LessThan
from pyiceberg.io.pyarrow import ArrowScan, schema_to_pyarrow
from pyiceberg.table import FileScanTask, Table

from k2.platform import iceberg_tables as tables
from k2.platform import planted
from k2.platform.config import PlatformConfig
from k2.platform.errors import PlatformError, QueryError, QueryTimeout
from k2.platform.routing import classify

__all__ = ["QueryEngine", "TimeBound"]

log = logging.getLogger(__name__)
T = TypeVar("T")
# A retry after a dropped connection only when this much of the budget is left.
RETRY_MIN_S = 0.5
TimeBound = datetime | int | None
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_QUANTUM = Decimal(1).scaleb(-8)
_CTX = decimal.Context(prec=60)
_TRADE_COLUMNS = ("price", "quantity", "event_timestamp", "sequence_number")


class QueryEngine:
    def __init__(
        self,
        config: PlatformConfig,
        *,
        timeout: float = 30.0,
        workers: int = 4,
        cache_bytes: int = 256 << 20,
        planted_bug: str | None = None,
    ) -> None:
        self.config = config
        self._planted = planted.arm(planted_bug, "query")  # test-only; see k2.platform.planted
        self.timeout = timeout
        self._cache = _ScanCache(cache_bytes)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="k2-query")
        self._lock = threading.Lock()
        self._catalog: Any = None
        self._local = threading.local()

    # ---- the queries ------------------------------------------------------------------------------

    def trades(
        self, symbol: str, start: TimeBound = None, end: TimeBound = None, *, limit: int | None = None,
        timeout: float | None = None,
    ) -> pa.Table:  # fmt: skip
        """Every trade of `symbol` in [start, end), all columns, ordered by (event_timestamp, sequence_number)."""
        return self._run(f"trades of {symbol}", timeout, lambda: self._rows("trade", symbol, start, end, limit))

    def quotes(
        self, symbol: str, start: TimeBound = None, end: TimeBound = None, *, limit: int | None = None,
        timeout: float | None = None,
    ) -> pa.Table:  # fmt: skip
        return self._run(f"quotes of {symbol}", timeout, lambda: self._rows("quote", symbol, start, end, limit))

    def ohlcv(
        self, symbol: str, start: TimeBound = None, end: TimeBound = None, interval: timedelta = timedelta(minutes=1),
        *, timeout: float | None = None,
    ) -> pa.Table:  # fmt: skip
        """Bars: bucket (start of the interval, UTC), open, high, low, close, volume, trades."""
        micros = int(interval / timedelta(microseconds=1))
        if micros <= 0:
            raise QueryError(f"interval must be positive, got {interval}")
        sql = f"""
            SELECT time_bucket(INTERVAL {micros} MICROSECONDS, event_timestamp) AS bucket,
                   first(price ORDER BY event_timestamp, sequence_number) AS open,
                   max(price) AS high, min(price) AS low,
                   last(price ORDER BY event_timestamp, sequence_number) AS close,
                   sum(CAST(quantity AS DECIMAL(38, 8))) AS volume, count(*) AS trades
            FROM scan GROUP BY bucket ORDER BY bucket"""

        def bars() -> pa.Table:
            data = self._cached_scan(symbol, start, end, _TRADE_COLUMNS)
            return self._duckdb(data, lambda con: con.sql(sql).to_arrow_table())

        return self._run(f"OHLCV of {symbol}", timeout, bars)

    def vwap(
        self, symbol: str, start: TimeBound = None, end: TimeBound = None, *, timeout: float | None = None
    ) -> Decimal | None:
        """Volume-weighted average price in [start, end), rounded half-even to 8 places; None without trades."""
        sql = "SELECT sum(CAST(price AS DECIMAL(38, 8)) * quantity), sum(CAST(quantity AS DECIMAL(38, 8))) FROM scan"

        def compute() -> Decimal | None:
            data = self._cached_scan(symbol, start, end, ("price", "quantity", "event_timestamp"))
            notional, volume = self._duckdb(data, lambda con: con.sql(sql).fetchall()[0])
            if not volume:
                return None
            return _CTX.divide(Decimal(notional), Decimal(volume)).quantize(_QUANTUM, rounding=decimal.ROUND_HALF_EVEN)

        return self._run(f"VWAP of {symbol}", timeout, compute)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> QueryEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- scanning ---------------------------------------------------------------------------------

    def _rows(self, kind: str, symbol: str, start: TimeBound, end: TimeBound, limit: int | None) -> pa.Table:
        data = self._scan(kind, symbol, start, end, ("*",))
        data = data.sort_by([("event_timestamp", "ascending"), ("sequence_number", "ascending")])
        return data.slice(0, limit) if limit is not None else data

    def _scan(self, kind: str, symbol: str, start: TimeBound, end: TimeBound, columns: tuple[str, ...]) -> pa.Table:
        table = self._table(kind, symbol)
        if table is None:
            return tables.arrow_schema(kind).empty_table()
        return table.scan(row_filter=_row_filter(symbol, start, end), selected_fields=columns).to_arrow()

    def _table(self, kind: str, symbol: str) -> Table | None:
        asset_class = classify(symbol)
        if asset_class is None:
            raise QueryError(
                f"symbol {symbol!r} matches no routing rule, so no table holds it",
                remedy="pass the canonical symbol (see k2.platform.routing), e.g. BTC-USD or AAPL",
            )
        return tables.open_table(self._get_catalog(), self.config.namespace, kind, asset_class, create=False)

    def _cached_scan(self, symbol: str, start: TimeBound, end: TimeBound, columns: tuple[str, ...]) -> pa.Table:
        """Trades of `symbol` in [start, end), from cached per-file data where possible."""
        table = self._table("trade", symbol)
        if table is None:
            return pa.schema([tables.arrow_schema("trade").field(name) for name in columns]).empty_table()
        data = self._cache.read(table, _row_filter(symbol, start, end), symbol, columns)
        mask = None
        for bound, compare in ((start, pc.greater_equal), (end, pc.less)):
            if bound is not None:
                limit = pa.scalar(_micros(bound), pa.timestamp("us", tz="UTC"))
                test = compare(data.column("event_timestamp"), limit)
                mask = test if mask is None else pc.and_(mask, test)
        return data if mask is None else data.filter(mask)

    def _duckdb(self, data: pa.Table, query: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = duckdb.connect()
            con.execute("SET TimeZone = 'UTC'")
        con.register("scan", data)
        try:
            return query(con)
        finally:
            con.unregister("scan")

    # ---- failure handling -------------------------------------------------------------------------

    def _get_catalog(self) -> Any:
        # never build under the lock: a hung catalog database must not block _reset() in the caller's thread
        catalog = self._catalog
        if catalog is None:
            catalog = tables.build_catalog(self.config)
            with self._lock:
                if self._catalog is None:
                    self._catalog = catalog
        return catalog

    def _reset(self) -> None:
        """Forget the catalog (and its connection pool): the next call builds fresh connections."""
        with self._lock:
            catalog, self._catalog = self._catalog, None
        engine = getattr(catalog, "engine", None)
        if engine is not None:
            try:
                engine.dispose()
            except Exception:  # a dead pool may fail to close; it is dropped either way
                log.debug("query: disposing the old catalog engine failed", exc_info=True)

    def _run(self, what: str, timeout: float | None, work: Callable[[], T]) -> T:
        """`work` within the timeout, failures typed. A read that hit a pooled connection the store dropped
        while it restarted is retried once on fresh connections (reads are idempotent), in the same budget."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        for attempt in (1, 2):
            future = self._pool.submit(work) if self._planted is None else _inline(work)
            try:
                return future.result(max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                future.cancel()
                self._reset()
                raise QueryTimeout(
                    f"{what} did not finish within {limit:.1f}s (S3 or the catalog may be slow or down)"
                ) from None
            except QueryError:
                raise
            except Exception as exc:
                error = tables.classify_failure(exc, what)
                if not isinstance(error, PlatformError):
                    raise
                self._reset()
                if attempt == 1 and _dropped_connection(exc) and deadline - time.monotonic() > RETRY_MIN_S:
                    log.info("%s: a pooled connection was dropped (%s); retrying once on fresh ones", what, exc)
                    continue
                log.warning("%s", error)
                raise error from exc
        raise AssertionError("unreachable")


def _inline(work: Callable[[], T]) -> Future[T]:
    """The planted bug query-without-timeout: the work runs in the caller's thread, so no deadline applies."""
    future: Future[T] = Future()
    try:
        future.set_result(work())
    except Exception as exc:
        future.set_exception(exc)
    return future


def _dropped_connection(exc: BaseException) -> bool:
    """The AWS SDK's words for a connection closed under a request (curl 52: no reply; 56: reset)."""
    text = str(exc)
    return "NETWORK_CONNECTION" in text and any(f"curlCode: {code}," in text for code in (52, 56))


class _ScanCache:
    """Per-file Arrow data (by file, its delete files, symbol and columns) and scan plans, LRU-bounded."""

    def __init__(self, max_bytes: int, max_plans: int = 64) -> None:
        self.max_bytes, self.max_plans = max_bytes, max_plans
        self._files: OrderedDict[tuple[Any, ...], pa.Table] = OrderedDict()
        self._plans: OrderedDict[tuple[Any, ...], list[FileScanTask]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._readers = ThreadPoolExecutor(4, thread_name_prefix="k2-query-read")

    def read(self, table: Table, row_filter: BooleanExpression, symbol: str, columns: tuple[str, ...]) -> pa.Table:
        plan_key = (table.metadata_location, repr(row_filter), columns)
        with self._lock:
            tasks = self._plans.get(plan_key)
        if tasks is None:
            tasks = list(table.scan(row_filter=row_filter, selected_fields=columns).plan_files())
            with self._lock:
                self._plans[plan_key] = tasks
                while len(self._plans) > self.max_plans:
                    self._plans.popitem(last=False)
        projection = table.schema().select(*columns)
        keys = [(t.file.file_path, tuple(sorted(d.file_path for d in t.delete_files)), symbol, columns) for t in tasks]
        with self._lock:
            missing = [t for t, k in zip(tasks, keys, strict=True) if k not in self._files]
        if missing:
            scan = ArrowScan(table.metadata, table.io, projection, EqualTo("symbol", symbol))
            # a pool of our own: pyiceberg's reads use its shared pool inside, so sharing it could deadlock
            read = self._readers.map(lambda task: scan.to_table([task]), missing)
            fresh = dict(zip((keys[tasks.index(t)] for t in missing), read, strict=True))
        else:
            fresh = {}
        parts = []
        with self._lock:
            for key in keys:
                part = fresh.get(key)
                if part is None:
                    part = self._files[key]
                    self._files.move_to_end(key)
                else:
                    self._store(key, part)
                parts.append(part)
        if not parts:
            return schema_to_pyarrow(projection, include_field_ids=False).empty_table()
        return pa.concat_tables(parts, promote_options="permissive")

    def _store(self, key: tuple[Any, ...], data: pa.Table) -> None:
        if key in self._files or data.nbytes > self.max_bytes:
            return
        self._files[key] = data
        self._bytes += data.nbytes
        while self._bytes > self.max_bytes:
            _, evicted = self._files.popitem(last=False)
            self._bytes -= evicted.nbytes


def _row_filter(symbol: str, start: TimeBound, end: TimeBound) -> BooleanExpression:
    row_filter: BooleanExpression = EqualTo("symbol", symbol)
    if start is not None:
        row_filter = And(row_filter, GreaterThanOrEqual("event_timestamp", _micros(start)))
    if end is not None:
        row_filter = And(row_filter, LessThan("event_timestamp", _micros(end)))
    return row_filter


def _micros(bound: datetime | int) -> int:
    if isinstance(bound, datetime):
        if bound.tzinfo is None:
            raise QueryError(f"time bound {bound.isoformat()} is naive", remedy="pass an aware datetime (UTC)")
        return (bound - _EPOCH) // timedelta(microseconds=1)
    return int(bound)
