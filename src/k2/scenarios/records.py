"""Market data for scenarios: valid trades from a seeded random source, with a sequence per symbol."""

from __future__ import annotations

import itertools
import random
import time
from collections import defaultdict
from decimal import Decimal
from typing import Any

SYMBOLS = {"BTC-USD": ("crypto", "COINBASE"), "ETH-USD": ("crypto", "KRAKEN"), "AAPL": ("equities", "XNAS"),
           "MSFT": ("equities", "XNAS"), "EURUSD": ("fx", "EBS")}  # fmt: skip


class TradeFactory:
    """`factory()` -> a new valid trade; unique ids, increasing sequence numbers per symbol, seeded values."""

    def __init__(self, rng: random.Random, run_tag: str) -> None:
        self.rng = rng
        self.run_tag = run_tag
        self._ids = itertools.count()
        self._seq: dict[str, int] = defaultdict(int)

    def __call__(self, symbol: str | None = None, **changes: Any) -> dict[str, Any]:
        symbol = symbol or self.rng.choice(sorted(SYMBOLS))
        asset_class, exchange = SYMBOLS.get(symbol, ("crypto", "COINBASE"))
        self._seq[symbol] += 1
        now_us = int(time.time() * 1_000_000)
        trade = {
            "trade_id": f"{self.run_tag}-{next(self._ids)}",
            "symbol": symbol,
            "exchange": exchange,
            "asset_class": asset_class,
            "price": Decimal(self.rng.randrange(1_000_000, 90_000_000)) / 10_000,
            "quantity": Decimal(self.rng.randrange(1, 5_000_000)) / 100_000,
            "side": self.rng.choice(("BUY", "SELL")),
            "event_timestamp": now_us - 1_000,
            "ingest_timestamp": now_us,
            "sequence_number": self._seq[symbol],
        }
        return {**trade, **changes}

    def batch(self, n: int, symbol: str | None = None) -> list[dict[str, Any]]:
        return [self(symbol) for _ in range(n)]
