"""The query API's request parameters: parsed strictly, every refusal naming the parameter and the fix.

Nothing a client sends reaches the query engine unchecked: unknown or repeated parameters, naive or
reversed time ranges, symbols no table holds and out-of-range numbers are all a 400 with a JSON body.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from k2.platform.routing import classify

__all__ = ["BadParameter", "QueryArgs", "parse_args"]

NAMESPACE_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
INTERVAL_RE = re.compile(r"^([1-9][0-9]{0,6})([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_INTERVAL = timedelta(days=31)
MAX_ROWS = 100_000
MAX_TIMEOUT_S = 60.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MICROS = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z


class BadParameter(Exception):
    """A request the API refuses (400); `code` is stable for clients to switch on."""

    def __init__(self, code: str, parameter: str | None, message: str, remedy: str) -> None:
        self.code, self.parameter, self.message, self.remedy = code, parameter, message, remedy
        super().__init__(message)


@dataclass(frozen=True)
class QueryArgs:
    symbol: str
    namespace: str
    start: int | None  # microseconds since the epoch, inclusive
    end: int | None  # exclusive
    limit: int
    interval: timedelta
    timeout: float


def parse_args(
    items: Iterable[tuple[str, str]], *, allowed: set[str], default_namespace: str, default_timeout: float,
    default_limit: int = 10_000,
) -> QueryArgs:  # fmt: skip
    """The endpoint's parameters from the query string's (name, value) pairs."""
    values: dict[str, str] = {}
    for name, value in items:
        if name not in allowed:
            raise BadParameter(
                "unknown_parameter", name, f"unknown parameter {name!r}", f"use only: {', '.join(sorted(allowed))}"
            )
        if name in values:
            raise BadParameter("repeated_parameter", name, f"parameter {name!r} given twice", "give it once")
        values[name] = value
    symbol = values.get("symbol")
    if not symbol:
        raise BadParameter("missing_parameter", "symbol", "parameter 'symbol' is required", "add ?symbol=BTC-USD")
    if classify(symbol) is None:
        raise BadParameter(
            "unknown_symbol", "symbol", f"symbol {symbol[:40]!r} matches no routing rule, so no table holds it",
            "pass a canonical symbol, e.g. BTC-USD, ETH-USD or AAPL",
        )  # fmt: skip
    namespace = values.get("namespace", default_namespace)
    if not NAMESPACE_RE.match(namespace):
        raise BadParameter(
            "invalid_parameter", "namespace", f"namespace {namespace[:70]!r} is not an Iceberg namespace name",
            "use lower-case letters, digits and '_' (at most 63), starting with a letter",
        )  # fmt: skip
    start, end = _time(values, "start"), _time(values, "end")
    if start is not None and end is not None and end <= start:
        raise BadParameter("invalid_range", "end", "end must be after start", "give end > start (end is exclusive)")
    return QueryArgs(
        symbol=symbol,
        namespace=namespace,
        start=start,
        end=end,
        limit=_int(values, "limit", default_limit, 1, MAX_ROWS),
        interval=_interval(values.get("interval", "1m")),
        timeout=_timeout(values, default_timeout),
    )


def _time(values: dict[str, str], name: str) -> int | None:
    text = values.get(name)
    if text is None:
        return None
    remedy = "give an ISO-8601 time with a zone (2026-03-29T00:00:00Z) or integer microseconds since the epoch"
    if re.fullmatch(r"-?[0-9]{1,19}", text):
        micros = int(text)
        if not 0 <= micros <= _MAX_MICROS:
            raise BadParameter("invalid_parameter", name, f"{name}={text} is outside 1970..9999", remedy)
        return micros
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadParameter("invalid_parameter", name, f"{name}={text[:40]!r} is not a time", remedy) from None
    if moment.tzinfo is None:
        raise BadParameter("naive_time", name, f"{name}={text[:40]!r} has no time zone", remedy)
    if moment < _EPOCH:
        raise BadParameter("invalid_parameter", name, f"{name}={text[:40]!r} is before 1970", remedy)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _int(values: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = values.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", text) or not low <= int(text) <= high:
        raise BadParameter("invalid_parameter", name, f"{name}={text[:20]!r} is not a whole number in {low}..{high}",
                           f"give {name} between {low} and {high}")  # fmt: skip
    return int(text)


def _interval(text: str) -> timedelta:
    match = INTERVAL_RE.match(text)
    interval = timedelta(seconds=int(match[1]) * _UNITS[match[2]]) if match else None
    if interval is None or interval > MAX_INTERVAL:
        raise BadParameter(
            "invalid_parameter", "interval", f"interval={text[:20]!r} is not a bar length of 1s..31d",
            "give a number and a unit: 30s, 1m, 15m, 1h, 1d",
        )  # fmt: skip
    return interval


def _timeout(values: dict[str, str], default: float) -> float:
    text = values.get("timeout")
    if text is None:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0.1 <= seconds <= MAX_TIMEOUT_S:  # NaN fails every comparison
        raise BadParameter("invalid_parameter", "timeout", f"timeout={text[:20]!r} is not 0.1..{MAX_TIMEOUT_S:g} s",
                           "give the query's time budget in seconds, e.g. timeout=5")  # fmt: skip
    return seconds
