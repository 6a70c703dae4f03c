"""The query API as scenarios see it: a client that records every answer (or the lack of one), and an
independent reader that compares what the API returns with what Iceberg holds."""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

import httpx

from k2.chaos.checker import Observed
from k2.platform.config import PlatformConfig

__all__ = ["Answer", "ApiClient", "ApiReader", "iceberg_vwap"]


@dataclass(frozen=True)
class Answer:
    """One request's fate: a status and a complete JSON body, or the client-side error (no answer)."""

    status: int | None
    body: dict[str, Any] | None
    retry_after: str | None
    elapsed_s: float
    failure: str | None = None  # e.g. ReadTimeout, when no answer came

    @property
    def code(self) -> str | None:
        error = (self.body or {}).get("error")
        return error.get("code") if isinstance(error, dict) else None


class ApiClient:
    """A client of the query API with its own id (the rate limiter's key) and a client-side timeout."""

    def __init__(self, base_url: str, client_id: str, *, timeout: float = 10.0) -> None:
        self.client_id = client_id
        self._http = httpx.Client(base_url=base_url, timeout=timeout, headers={"X-Client-Id": client_id},
                                  limits=httpx.Limits(max_connections=256))  # a flood is concurrent  # fmt: skip

    def get(self, path: str, **params: Any) -> Answer:
        started = time.perf_counter()
        try:
            response = self._http.get(path, params={k: v for k, v in params.items() if v is not None})
        except httpx.HTTPError as exc:  # no (complete) answer: timeouts, refused, reset
            return Answer(None, None, None, time.perf_counter() - started, type(exc).__name__)
        elapsed = time.perf_counter() - started
        # a body that does not parse as JSON would be a half-sent answer: json() raises, the scenario fails
        return Answer(response.status_code, response.json(), response.headers.get("retry-after"), elapsed)

    def vwap(self, symbol: str, namespace: str, **params: Any) -> Answer:
        return self.get("/v1/vwap", symbol=symbol, namespace=namespace, **params)

    def trades(self, symbol: str, namespace: str, **params: Any) -> Answer:
        return self.get("/v1/trades", symbol=symbol, namespace=namespace, limit=100_000, **params)

    def health(self) -> dict[str, Any]:
        answer = self.get("/health")
        assert answer.status == 200 and answer.body is not None, f"API health: {answer}"
        return answer.body

    def close(self) -> None:
        self._http.close()


class ApiReader:
    """The trades the API returns, as the checker's observations (source `api:trades`)."""

    source = "api:trades"

    def __init__(self, client: ApiClient, namespace: str, symbols: list[str]) -> None:
        self.client, self.namespace, self.symbols = client, namespace, symbols

    def read(self) -> list[Observed]:
        observed = []
        for symbol in self.symbols:
            answer = self.client.trades(symbol, self.namespace, timeout=20)
            if answer.status != 200 or answer.body is None:
                return []  # not answering yet: nothing observed this time (wait_drained polls again)
            observed += [
                Observed(t["trade_id"], t["symbol"], t["sequence_number"], self.source) for t in answer.body["trades"]
            ]
        return observed


def iceberg_vwap(config: PlatformConfig, symbol: str) -> Decimal | None:
    """VWAP straight from the Iceberg tables in Python decimals (not through the query engine or DuckDB),
    rounded as the API rounds it."""
    from k2.platform.iceberg_tables import build_catalog, open_table
    from k2.platform.routing import classify

    asset_class = classify(symbol)
    assert asset_class is not None, symbol
    table = open_table(build_catalog(config), config.namespace, "trade", asset_class.value, create=False)
    if table is None:
        return None
    rows = [r for r in table.scan(selected_fields=("symbol", "price", "quantity")).to_arrow().to_pylist()
            if r["symbol"] == symbol]  # fmt: skip
    with localcontext() as ctx:
        ctx.prec = 60
        volume = sum((r["quantity"] for r in rows), Decimal(0))
        if not volume:
            return None
        notional = sum((r["price"] * r["quantity"] for r in rows), Decimal(0))
        return (notional / volume).quantize(Decimal(1).scaleb(-8), rounding=ROUND_HALF_EVEN)
