"""The query API: trades, OHLCV bars and VWAP over HTTP, in front of the query engine.

    GET /v1/trades?symbol=BTC-USD&start=2026-12-01T00:00:00Z&end=...&limit=1000[&namespace=market]
    GET /v1/ohlcv?symbol=BTC-USD&interval=1h[&start=...&end=...]
    GET /v1/vwap?symbol=BTC-USD[&start=...&end=...]
    GET /health                     # liveness + breaker and limiter state; touches no storage

Every answer is JSON. Errors are {"error": {"code", "message", "remedy", "parameter"?}}: 400 bad input,
404/405 wrong route, 429 rate-limited (Retry-After), 503 storage down or the circuit open (Retry-After),
504 the query's time budget ran out. Requests are limited per client (`X-Client-Id`, else the address)
before anything else runs; storage calls go through one circuit breaker, so an outage costs each
caller milliseconds, not a timeout.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from k2.platform.api.breaker import BreakerOpen, CircuitBreaker
from k2.platform.api.limiter import ClientLimiter
from k2.platform.api.params import BadParameter, QueryArgs, parse_args
from k2.platform.config import PlatformConfig
from k2.platform.errors import DependencyUnavailable, QueryError, QueryTimeout

__all__ = ["ApiSettings", "create_app"]

log = logging.getLogger("k2.platform.api")
CLIENT_HEADER = "x-client-id"
CLIENT_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_COMMON = {"symbol", "namespace", "start", "end", "timeout"}
ALLOWED = {"trades": _COMMON | {"limit"}, "ohlcv": _COMMON | {"interval"}, "vwap": _COMMON}


@dataclass(frozen=True)
class ApiSettings:
    rate: float = 50.0  # requests a second per client, after the burst
    burst: int = 100
    failure_threshold: int = 5  # consecutive storage failures that open the circuit
    reset_timeout: float = 5.0  # seconds open before one probe is let through
    query_timeout: float = 10.0  # default time budget of one query (a request may ask for less or more)
    max_engines: int = 16  # query engines kept, one per namespace asked for


def _is_storage_failure(exc: BaseException) -> bool:
    """What opens the circuit: storage or the catalog down or too slow. Bad input does not."""
    return isinstance(exc, DependencyUnavailable | QueryTimeout)


class _Engines:
    """One query engine per namespace, the least recently used closed beyond `limit`."""

    def __init__(self, config: PlatformConfig, timeout: float, limit: int) -> None:
        self.config, self.timeout, self.limit = config, timeout, limit
        self._engines: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, namespace: str) -> Any:
        from k2.platform.query import QueryEngine

        with self._lock:
            engine = self._engines.get(namespace)
            if engine is None:
                engine = self._engines[namespace] = QueryEngine(
                    self.config.with_(namespace=namespace), timeout=self.timeout
                )
            self._engines.move_to_end(namespace)
            while len(self._engines) > self.limit:
                self._engines.popitem(last=False)[1].close()
            return engine

    def close(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.close()
            self._engines.clear()


def error(status: int, code: str, message: str, remedy: str, *, parameter: str | None = None,
          retry_after: str | None = None) -> JSONResponse:  # fmt: skip
    body: dict[str, Any] = {"code": code, "message": message, "remedy": remedy}
    if parameter is not None:
        body["parameter"] = parameter
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _rows(table: Any) -> list[dict[str, Any]]:
    return [{k: _jsonable(v) for k, v in row.items()} for row in table.to_pylist()]


def create_app(config: PlatformConfig, settings: ApiSettings | None = None) -> Starlette:
    settings = settings or ApiSettings()
    limiter = ClientLimiter(settings.rate, settings.burst)
    breaker = CircuitBreaker(settings.failure_threshold, settings.reset_timeout)
    engines = _Engines(config, settings.query_timeout, settings.max_engines)

    def client_of(request: Request) -> str:
        claimed = request.headers.get(CLIENT_HEADER)
        if claimed is None:
            return f"addr:{request.client.host if request.client else 'unknown'}"
        if not CLIENT_RE.match(claimed):
            raise BadParameter("invalid_header", "X-Client-Id", "X-Client-Id is not a client id",
                               "send 1-64 characters of A-Z a-z 0-9 . _ : -")  # fmt: skip
        return claimed

    def endpoint(kind: str, run: Callable[[Any, QueryArgs], dict[str, Any]]) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            try:
                key, wait = limiter.acquire(client_of(request))
            except BadParameter as exc:
                return error(400, exc.code, exc.message, exc.remedy, parameter=exc.parameter)
            if wait is not None:
                return error(429, "rate_limited", "too many requests from this client",
                             "wait Retry-After seconds; spread requests out or ask for a higher limit",
                             retry_after=limiter.retry_after_header(wait))  # fmt: skip
            try:
                args = parse_args(
                    request.query_params.multi_items(), allowed=ALLOWED[kind], default_namespace=config.namespace,
                    default_timeout=settings.query_timeout,
                )  # fmt: skip
                # admitted or refused on the event loop: an open circuit answers without a thread hop
                with breaker.guard(_is_storage_failure):
                    body = await anyio.to_thread.run_sync(run, engines.get(args.namespace), args)
            except BadParameter as exc:
                return error(400, exc.code, exc.message, exc.remedy, parameter=exc.parameter)
            except BreakerOpen as exc:
                return error(503, "circuit_open", f"storage is not being called: {exc}",
                             "retry after Retry-After seconds; check `k2 stack status` for S3 and postgres",
                             retry_after=limiter.retry_after_header(exc.retry_after))  # fmt: skip
            except QueryTimeout as exc:
                return error(504, "query_timeout", exc.detail, exc.remedy)
            except DependencyUnavailable as exc:
                return error(503, "storage_unavailable", exc.detail, exc.remedy, retry_after="1")
            except QueryError as exc:
                return error(400, "query_refused", exc.detail, exc.remedy)
            except Exception:
                log.exception("query API: %s %s failed unexpectedly", request.method, request.url.path)
                return error(500, "internal_error", "the query failed unexpectedly (details in the API's log)",
                             "report it with the log (`k2 stack logs api`); retrying may help")  # fmt: skip
            finally:
                limiter.release(key)
            return JSONResponse(body)

        return handle

    def trades(engine: Any, a: QueryArgs) -> dict[str, Any]:
        rows = _rows(engine.trades(a.symbol, a.start, a.end, limit=a.limit, timeout=a.timeout))
        return {"symbol": a.symbol, "namespace": a.namespace, "count": len(rows), "trades": rows}

    def ohlcv(engine: Any, a: QueryArgs) -> dict[str, Any]:
        bars = _rows(engine.ohlcv(a.symbol, a.start, a.end, a.interval, timeout=a.timeout))
        seconds = int(a.interval.total_seconds())
        return {"symbol": a.symbol, "namespace": a.namespace, "interval_s": seconds, "bars": bars}

    def vwap(engine: Any, a: QueryArgs) -> dict[str, Any]:
        value = engine.vwap(a.symbol, a.start, a.end, timeout=a.timeout)
        return {"symbol": a.symbol, "namespace": a.namespace, "vwap": None if value is None else str(value)}

    async def health(request: Request) -> Response:
        return JSONResponse({
            "status": "ok",
            "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "breaker": asdict(breaker.snapshot()),
            "limiter": {"rate": limiter.rate, "burst": limiter.burst, "max_in_flight": limiter.max_in_flight,
                        "clients": limiter.clients, "rejected": limiter.rejected},
        })  # fmt: skip

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            return error(405, "method_not_allowed", f"{request.method} is not supported here", "use GET")
        return error(exc.status_code, "not_found", f"no route {request.url.path[:80]!r}",
                     "use /v1/trades, /v1/ohlcv, /v1/vwap or /health")  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # load the query engine's libraries (pyiceberg, DuckDB) now, not in the first request
        threading.Thread(target=lambda: __import__("k2.platform.query"), daemon=True).start()
        try:
            yield
        finally:
            engines.close()

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/trades", endpoint("trades", trades), methods=["GET"]),
        Route("/v1/ohlcv", endpoint("ohlcv", ohlcv), methods=["GET"]),
        Route("/v1/vwap", endpoint("vwap", vwap), methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)
    app.state.breaker, app.state.limiter = breaker, limiter
    return app
