"""Validation: valid records pass and round-trip through fastavro; any single mutation fails on its field."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k2.platform.errors import ValidationError
from k2.platform.routing import FIAT, AssetClass
from k2.platform.schemas import parsed_schema, schema_fields
from k2.platform.validation import (
    REASON_CODES,
    ValidationPolicy,
    validate_quote,
    validate_trade,
)

NOW = datetime(2026, 1, 13, 12, 0, tzinfo=UTC)
POLICY = ValidationPolicy(now=lambda: NOW)
MICROS = 1_000_000
NOW_US = int((NOW - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * MICROS

_FIAT = sorted(FIAT)
_SYMBOLS = {
    AssetClass.EQUITIES: st.from_regex(r"\A[A-Z]{1,5}([.-][A-Z])?\Z"),
    AssetClass.CRYPTO: st.builds(
        lambda base, sep, quote: f"{base}{sep}{quote}",
        st.from_regex(r"\A[A-Z0-9]{2,6}\Z").filter(lambda b: b not in FIAT and b not in ("USD", "EUR", "BTC", "ETH")),
        st.sampled_from(["-", "/"]),
        st.sampled_from(["USD", "USDT", "USDC", "BTC", "ETH"]),
    ),
    AssetClass.FX: st.builds(
        lambda pair, sep: f"{pair[0]}{sep}{pair[1]}",
        st.lists(st.sampled_from(_FIAT), min_size=2, max_size=2, unique=True),
        st.sampled_from(["", "/", "-"]),
    ),
    AssetClass.FUTURES: st.from_regex(r"\A[A-Z]{1,3}[FGHJKMNQUVXZ][0-9]{1,2}\Z"),
    AssetClass.OPTIONS: st.builds(
        lambda root, d, cp, strike: f"{root}{d:%y%m%d}{cp}{strike:08d}",
        st.from_regex(r"\A[A-Z]{1,6}\Z"),
        st.dates(min_value=datetime(2020, 1, 1).date(), max_value=datetime(2030, 12, 31).date()),
        st.sampled_from("CP"),
        st.integers(0, 99_999_999),
    ),
    AssetClass.FIXED_INCOME: st.sampled_from(["US912828U816", "US0378331005", "DE0001102580", "037833100"]),
}
_ASSET_AND_SYMBOL = st.sampled_from(list(AssetClass)).flatmap(lambda a: st.tuples(st.just(a.value), _SYMBOLS[a]))

_DECIMAL = st.decimals(
    min_value=Decimal("0.00000001"), max_value=Decimal("9999999999.99999999"), places=8, allow_nan=False
)
# the same value in each accepted input form
_AS_INPUT = st.sampled_from([lambda d: d, str, lambda d: int(d) if d == int(d) else d])
_TIMESTAMP_US = st.integers(NOW_US - 86_400 * MICROS * 365, NOW_US)


def _as_input(draw: st.DrawFn, value: Decimal) -> Any:
    return draw(_AS_INPUT)(value)


@st.composite
def trades(draw: st.DrawFn) -> dict[str, Any]:
    asset_class, symbol = draw(_ASSET_AND_SYMBOL)
    event = draw(_TIMESTAMP_US)
    record: dict[str, Any] = {
        "trade_id": draw(st.text(min_size=1, max_size=20).filter(str.strip)),
        "symbol": symbol,
        "exchange": draw(st.sampled_from(["XNAS", "XNYS", "COINBASE", "BINANCE", "CME", "EBS"])),
        "asset_class": asset_class,
        "price": _as_input(draw, draw(_DECIMAL)),
        "quantity": _as_input(draw, draw(_DECIMAL)),
        "side": draw(st.sampled_from(["BUY", "SELL", "UNKNOWN"])),
        "event_timestamp": event,
        "ingest_timestamp": draw(st.sampled_from([event, event + 1500, datetime.fromtimestamp(event / MICROS, UTC)])),
        "sequence_number": draw(st.integers(0, 2**63 - 1)),
    }
    if draw(st.booleans()):
        record["trade_conditions"] = draw(st.lists(st.sampled_from(["@", "F", "T", "I", "X"]), max_size=4))
    if draw(st.booleans()):
        record["source_sequence"] = draw(st.none() | st.integers(0, 2**63 - 1))
    return record


@st.composite
def quotes(draw: st.DrawFn) -> dict[str, Any]:
    asset_class, symbol = draw(_ASSET_AND_SYMBOL)
    bid, ask = sorted([draw(_DECIMAL), draw(_DECIMAL)])
    event = draw(_TIMESTAMP_US)
    return {
        "quote_id": draw(st.text(min_size=1, max_size=20).filter(str.strip)),
        "symbol": symbol,
        "exchange": draw(st.sampled_from(["XNAS", "COINBASE", "CME"])),
        "asset_class": asset_class,
        "bid_price": _as_input(draw, bid),
        "bid_size": _as_input(draw, draw(_DECIMAL | st.just(Decimal(0)))),
        "ask_price": _as_input(draw, ask),
        "ask_size": _as_input(draw, draw(_DECIMAL | st.just(Decimal(0)))),
        "event_timestamp": event,
        "ingest_timestamp": event + draw(st.integers(0, 5 * MICROS)),
        "sequence_number": draw(st.integers(0, 2**40)),
    }


def _roundtrip(name: str, record: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed_schema(name), record)
    buffer.seek(0)
    return fastavro.schemaless_reader(buffer, parsed_schema(name), parsed_schema(name))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trades())
def test_valid_trades_pass_and_roundtrip(record: dict[str, Any]) -> None:
    out = validate_trade(record, policy=POLICY)
    assert list(out) == list(schema_fields("trade"))
    assert out["price"] == Decimal(str(record["price"]))
    assert _roundtrip("trade", out) == out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(quotes())
def test_valid_quotes_pass_and_roundtrip(record: dict[str, Any]) -> None:
    out = validate_quote(record, policy=POLICY)
    assert list(out) == list(schema_fields("quote"))
    assert _roundtrip("quote", out) == out


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda r: r.pop(name)


def _set(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda r: r.__setitem__(name, value)


def _shift(name: str, delta_us: int) -> Callable[[dict[str, Any]], None]:
    return lambda r: r.__setitem__(name, r["event_timestamp"] + delta_us)


FUTURE = NOW_US + 3600 * MICROS
COMMON_MUTATIONS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("symbol", _drop("symbol"), "missing_field"),
    ("symbol", _set("symbol", ""), "empty"),
    ("symbol", _set("symbol", "aapl"), "not_normalized"),
    ("symbol", _set("symbol", "NOT A SYMBOL"), "unroutable_symbol"),
    ("symbol", _set("symbol", 42), "wrong_type"),
    ("exchange", _set("exchange", "nasdaq"), "invalid_format"),
    ("exchange", _drop("exchange"), "missing_field"),
    ("asset_class", _set("asset_class", "stocks"), "unknown_enum"),
    ("asset_class", _set("asset_class", None), "wrong_type"),
    ("event_timestamp", _set("event_timestamp", -1), "timestamp_too_old"),
    ("event_timestamp", _set("event_timestamp", FUTURE), "timestamp_in_future"),
    ("event_timestamp", _set("event_timestamp", datetime(2025, 1, 1)), "naive_datetime"),
    ("event_timestamp", _set("event_timestamp", "2025-01-01"), "wrong_type"),
    ("event_timestamp", _set("event_timestamp", 2**64), "out_of_range"),
    ("ingest_timestamp", _shift("ingest_timestamp", -120 * MICROS), "ingest_before_event"),
    ("ingest_timestamp", _set("ingest_timestamp", True), "wrong_type"),
    ("sequence_number", _set("sequence_number", -1), "negative"),
    ("sequence_number", _set("sequence_number", 2**63), "out_of_range"),
    ("sequence_number", _set("sequence_number", 1.0), "wrong_type"),
    ("sequence_number", _drop("sequence_number"), "missing_field"),
    ("source_sequence", _set("source_sequence", "7"), "wrong_type"),
    ("unexpected", _set("unexpected", 1), "unknown_field"),
]
BAD_DECIMALS: list[tuple[Any, str]] = [
    (Decimal("NaN"), "not_finite"),
    (Decimal("Infinity"), "not_finite"),
    ("-Infinity", "not_finite"),
    (Decimal("1.123456789"), "too_many_fraction_digits"),
    ("0.000000001", "too_many_fraction_digits"),
    (Decimal("12345678901"), "too_many_integer_digits"),
    (10**10, "too_many_integer_digits"),
    (1.5, "float_not_allowed"),
    ("1,5", "invalid_format"),
    (True, "wrong_type"),
    ([1], "wrong_type"),
]
TRADE_MUTATIONS = [
    *COMMON_MUTATIONS,
    ("trade_id", _drop("trade_id"), "missing_field"),
    ("trade_id", _set("trade_id", "  "), "empty"),
    ("trade_id", _set("trade_id", "x" * 129), "too_long"),
    ("price", _set("price", 0), "non_positive"),
    ("price", _set("price", "-1"), "negative"),
    ("quantity", _set("quantity", Decimal("-0.5")), "negative"),
    ("side", _set("side", "HOLD"), "unknown_enum"),
    ("side", _set("side", "buy"), "unknown_enum"),
    ("trade_conditions", _set("trade_conditions", "F"), "wrong_type"),
    ("trade_conditions", _set("trade_conditions", [1]), "wrong_type"),
    *[(field, _set(field, bad), code) for field in ("price", "quantity") for bad, code in BAD_DECIMALS],
]
QUOTE_MUTATIONS = [
    *COMMON_MUTATIONS,
    ("quote_id", _drop("quote_id"), "missing_field"),
    ("bid_price", _set("bid_price", 0), "non_positive"),
    ("ask_size", _set("ask_size", -1), "negative"),
    ("bid_size", _drop("bid_size"), "missing_field"),
    *[(field, _set(field, bad), code) for field in ("bid_price", "ask_size") for bad, code in BAD_DECIMALS],
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trades(), st.sampled_from(TRADE_MUTATIONS))
def test_any_single_trade_mutation_fails_on_its_field(record: dict[str, Any], mutation: tuple[Any, ...]) -> None:
    field, mutate, code = mutation
    mutate(record)
    with pytest.raises(ValidationError) as info:
        validate_trade(record, policy=POLICY)
    assert (info.value.field, info.value.reason_code) == (field, code)
    assert info.value.reason_code in REASON_CODES


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(quotes(), st.sampled_from(QUOTE_MUTATIONS))
def test_any_single_quote_mutation_fails_on_its_field(record: dict[str, Any], mutation: tuple[Any, ...]) -> None:
    field, mutate, code = mutation
    mutate(record)
    with pytest.raises(ValidationError) as info:
        validate_quote(record, policy=POLICY)
    assert (info.value.field, info.value.reason_code) == (field, code)


@given(trades(), st.sampled_from(list(AssetClass)))
@settings(deadline=None)
def test_asset_class_must_match_routing(record: dict[str, Any], other: AssetClass) -> None:
    if other.value == record["asset_class"]:
        return
    record["asset_class"] = other.value
    with pytest.raises(ValidationError) as info:
        validate_trade(record, policy=POLICY)
    assert (info.value.field, info.value.reason_code) == ("asset_class", "asset_class_mismatch")


def _quote(**changes: Any) -> dict[str, Any]:
    base = {
        "quote_id": "q-1",
        "symbol": "AAPL",
        "exchange": "XNAS",
        "asset_class": "equities",
        "bid_price": "189.10",
        "bid_size": "100",
        "ask_price": "189.12",
        "ask_size": "200",
        "event_timestamp": NOW_US - MICROS,
        "ingest_timestamp": NOW_US,
        "sequence_number": 7,
    }
    return {**base, **changes}


def test_crossed_quote_is_refused_unless_allowed() -> None:
    crossed = _quote(bid_price="189.20")
    with pytest.raises(ValidationError) as info:
        validate_quote(crossed, policy=POLICY)
    assert (info.value.field, info.value.reason_code, info.value.record_id) == ("bid_price", "crossed_quote", "q-1")
    allowing = ValidationPolicy(now=lambda: NOW, allow_crossed_quotes=True)
    assert validate_quote(crossed, policy=allowing)["bid_price"] == Decimal("189.2")


def test_locked_and_one_sided_quotes_pass() -> None:
    assert validate_quote(_quote(bid_price="189.12"), policy=POLICY)
    assert validate_quote(_quote(bid_price="190", bid_size="0"), policy=POLICY)


def test_output_is_normalised() -> None:
    eastern = timezone(timedelta(hours=-5))
    out = validate_quote(
        _quote(bid_price=Decimal("189.100000000"), event_timestamp=datetime(2026, 1, 13, 6, 59, tzinfo=eastern)),
        policy=POLICY,
    )
    assert out["bid_price"].as_tuple().exponent == -8
    assert out["event_timestamp"] == datetime(2026, 1, 13, 11, 59, tzinfo=UTC)
    assert out["event_timestamp"].tzinfo is UTC
    assert out["source_sequence"] is None


def test_error_message_names_record_field_and_remedy() -> None:
    with pytest.raises(ValidationError) as info:
        validate_quote(_quote(ask_price="abc"), policy=POLICY)
    text = str(info.value)
    assert text.startswith("validation: record q-1: field 'ask_price'")
    assert "Remedy:" in text
    assert info.value.to_dead_letter() == {
        "record_id": "q-1",
        "field": "ask_price",
        "reason": info.value.reason,
        "reason_code": "invalid_format",
    }


def test_non_mapping_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        validate_trade(["not", "a", "dict"])  # type: ignore[arg-type]
    assert info.value.reason_code == "not_a_mapping"


def test_input_is_not_modified() -> None:
    record = _quote()
    snapshot = dict(record)
    validate_quote(record, policy=POLICY)
    assert record == snapshot
