"""Routing table: each rule, its edges, and the ambiguous forms it deliberately refuses."""

from __future__ import annotations

import pytest

from k2.platform.errors import PlatformError, RoutingError
from k2.platform.routing import RULES, AssetClass, classify, route

A = AssetClass
CASES = [
    ("EURUSD", A.FX),
    ("EUR/USD", A.FX),
    ("GBP-JPY", A.FX),
    ("USDUSD", None),  # same currency twice is no pair
    ("BTC-USD", A.CRYPTO),
    ("ETH/USDT", A.CRYPTO),
    ("1INCH-USDT", A.CRYPTO),
    ("BTCUSDT", A.CRYPTO),
    ("USDC-USDT", A.CRYPTO),
    ("BTCUSD", None),  # no separator and a fiat quote: ambiguous, write BTC-USD
    ("AAPL240621C00190000", A.OPTIONS),
    ("SPY   240621P00400000", A.OPTIONS),
    ("AAPL241321C00190000", None),  # month 13
    ("ESZ6", A.FUTURES),
    ("CLF25", A.FUTURES),
    ("ESA6", None),  # A is not a month code
    ("US912828U816", A.FIXED_INCOME),
    ("US912828U817", None),  # wrong ISIN check digit
    ("037833100", A.FIXED_INCOME),
    ("037833101", None),  # wrong CUSIP check digit
    ("AAPL", A.EQUITIES),
    ("F", A.EQUITIES),
    ("BRK.B", A.EQUITIES),
    ("BF-B", A.EQUITIES),
    ("GOOGLE", None),  # six letters, not a fiat pair
    ("aapl", None),
    (" AAPL", None),
    ("", None),
    ("X" * 40, None),
]


@pytest.mark.parametrize(("symbol", "expected"), CASES, ids=[c[0] or "<empty>" for c in CASES])
def test_classify(symbol: str, expected: AssetClass | None) -> None:
    assert classify(symbol) == expected


def test_every_rule_example_routes_to_its_own_class() -> None:
    for rule in RULES:
        assert classify(rule.example) is rule.asset_class, rule.name


def test_route_raises_with_the_accepted_forms() -> None:
    with pytest.raises(RoutingError) as info:
        route("BTCUSD")
    assert isinstance(info.value, PlatformError)
    message = str(info.value)
    assert message.startswith("routing: symbol 'BTCUSD' matches no routing rule")
    assert "crypto like BTC-USD" in message and "Remedy:" in message


def test_classify_tolerates_non_strings() -> None:
    assert classify(None) is None  # type: ignore[arg-type]
