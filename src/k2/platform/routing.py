"""Symbol routing: which asset class a canonical symbol belongs to.

Validation uses this to refuse records whose `asset_class` disagrees with their symbol (a
mis-tagged record would land in the wrong topic and table). The rules are a small ordered table;
the first rule that matches wins, and a symbol no rule matches is unroutable:

  fx            EURUSD, EUR/USD, EUR-USD: two *different* ISO-4217 fiat codes from FIAT.
  crypto        BTC-USD, ETH/USDT, 1INCH-USDT: base (2-10 alphanumerics, not fiat) '-' or '/' a
                quote from CRYPTO_QUOTES; or BTCUSDT-style with a stablecoin quote (STABLECOINS).
                'BTCUSD' (no separator, fiat quote) is ambiguous and unroutable: write BTC-USD.
  options       OCC symbology: root (1-6 letters, optionally space-padded), YYMMDD, C|P, strike
                as 8 digits, e.g. AAPL240621C00190000.
  futures       root (1-3 letters) + month code (FGHJKMNQUVXZ) + 1-2 year digits: ESZ6, CLF25.
  fixed_income  ISIN (12 chars, valid check digit) or CUSIP (9 chars, valid check digit). Equities
                are keyed by ticker in K2, so identifier-keyed instruments route here.
  equities      plain tickers: 1-5 letters, optionally a one-letter share class after '.' or '-':
                AAPL, BRK.B, BF-B.

Symbols must already be canonical (upper-case, no surrounding whitespace); routing never guesses.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from k2.platform.errors import RoutingError

__all__ = [
    "CRYPTO_QUOTES",
    "FIAT",
    "RULES",
    "STABLECOINS",
    "AssetClass",
    "Rule",
    "classify",
    "route",
]


class AssetClass(StrEnum):
    """The AssetClass enum of the v2 schemas; values are the Avro enum symbols."""

    EQUITIES = "equities"
    CRYPTO = "crypto"
    FUTURES = "futures"
    FX = "fx"
    OPTIONS = "options"
    FIXED_INCOME = "fixed_income"


FIAT = frozenset(
    {
        *("USD", "EUR", "JPY", "GBP", "CHF", "AUD", "NZD", "CAD", "SEK", "NOK", "DKK", "HKD", "SGD", "CNH"),
        *("CNY", "MXN", "ZAR", "TRY", "PLN", "CZK", "HUF", "ILS", "INR", "KRW", "BRL", "THB", "TWD"),
    }
)
STABLECOINS = frozenset({"USDT", "USDC", "BUSD", "FDUSD", "DAI", "TUSD"})
CRYPTO_QUOTES = frozenset({"USD", "EUR", "GBP", "JPY", "BTC", "ETH"} | STABLECOINS)

# re.ASCII and \Z: symbols are ASCII, so \d must not take Arabic-Indic or other digits, nor $ a trailing newline
_FX = re.compile(r"^(?P<base>[A-Z]{3})[/-]?(?P<quote>[A-Z]{3})\Z", re.ASCII)
_CRYPTO_SEP = re.compile(r"^(?P<base>[A-Z0-9]{2,10})[/-](?P<quote>[A-Z]{3,5})\Z", re.ASCII)
_CRYPTO_STABLE = re.compile(
    r"^(?P<base>[A-Z0-9]{2,10}?)(?P<quote>" + "|".join(sorted(STABLECOINS, key=len, reverse=True)) + r")\Z",
    re.ASCII,
)
_OPTION = re.compile(r"^[A-Z]{1,6} *(?P<yy>\d\d)(?P<mm>\d\d)(?P<dd>\d\d)[CP]\d{8}\Z", re.ASCII)
_FUTURE = re.compile(r"^[A-Z]{1,3}[FGHJKMNQUVXZ]\d{1,2}\Z", re.ASCII)
_ISIN = re.compile(r"^[A-Z]{2}[A-Z0-9]{9}\d\Z", re.ASCII)
_CUSIP = re.compile(r"^[A-Z0-9]{8}\d\Z", re.ASCII)
_EQUITY = re.compile(r"^[A-Z]{1,5}([.-][A-Z])?\Z", re.ASCII)


def _is_fx(symbol: str) -> bool:
    m = _FX.match(symbol)
    return bool(m) and m["base"] in FIAT and m["quote"] in FIAT and m["base"] != m["quote"]


def _is_crypto(symbol: str) -> bool:
    m = _CRYPTO_SEP.match(symbol)
    if m:
        return m["quote"] in CRYPTO_QUOTES and m["base"] not in FIAT and m["base"] != m["quote"]
    m = _CRYPTO_STABLE.match(symbol)
    return bool(m) and m["base"] not in FIAT


def _is_option(symbol: str) -> bool:
    m = _OPTION.match(symbol)
    return bool(m) and 1 <= int(m["mm"]) <= 12 and 1 <= int(m["dd"]) <= 31


def _char_value(char: str) -> int:
    return int(char) if "0" <= char <= "9" else ord(char) - ord("A") + 10


def _isin_ok(symbol: str) -> bool:
    """ISIN check digit: Luhn over the digits obtained by expanding letters to 10..35."""
    if not _ISIN.match(symbol):
        return False
    digits = "".join(str(_char_value(c)) for c in symbol[:-1])
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n // 10 + n % 10
    return (10 - total % 10) % 10 == int(symbol[-1])


def _cusip_ok(symbol: str) -> bool:
    """CUSIP check digit: weights 1,2 alternating over values, summing the digits of each product."""
    if not _CUSIP.match(symbol):
        return False
    total = 0
    for i, c in enumerate(symbol[:8]):
        v = _char_value(c) * (2 if i % 2 else 1)
        total += v // 10 + v % 10
    return (10 - total % 10) % 10 == int(symbol[-1])


@dataclass(frozen=True)
class Rule:
    """One row of the routing table: an asset class, a readable name, a predicate and an example."""

    asset_class: AssetClass
    name: str
    matches: Callable[[str], bool]
    example: str


RULES: tuple[Rule, ...] = (
    Rule(AssetClass.FX, "fiat pair", _is_fx, "EUR/USD"),
    Rule(AssetClass.CRYPTO, "crypto pair", _is_crypto, "BTC-USD"),
    Rule(AssetClass.OPTIONS, "OCC option", _is_option, "AAPL240621C00190000"),
    Rule(AssetClass.FUTURES, "future (root+month+year)", lambda s: bool(_FUTURE.match(s)), "ESZ6"),
    Rule(AssetClass.FIXED_INCOME, "ISIN or CUSIP", lambda s: _isin_ok(s) or _cusip_ok(s), "US912828U816"),
    Rule(AssetClass.EQUITIES, "ticker", lambda s: bool(_EQUITY.match(s)), "AAPL"),
)


def classify(symbol: str) -> AssetClass | None:
    """The asset class of a canonical symbol, or None when no rule matches."""
    if not isinstance(symbol, str) or not symbol or len(symbol) > 32:
        return None
    return _classify(symbol)


@functools.lru_cache(maxsize=65536)
def _classify(symbol: str) -> AssetClass | None:
    """Cached: a feed repeats a few thousand symbols, and the rules are pure (about 2 µs a record saved)."""
    for rule in RULES:
        if rule.matches(symbol):
            return rule.asset_class
    return None


def route(symbol: str) -> AssetClass:
    """Like `classify`, but an unroutable symbol raises RoutingError naming it and the accepted forms."""
    asset_class = classify(symbol)
    if asset_class is None:
        forms = ", ".join(f"{r.asset_class.value} like {r.example}" for r in RULES)
        raise RoutingError(f"symbol {symbol!r} matches no routing rule (accepted forms: {forms})")
    return asset_class
