"""Record validation for trades and quotes, before they are serialised with the v2 Avro schemas.

`validate_trade` / `validate_quote` return a new, schema-ready dict (every schema field present,
defaults filled, decimals quantized to scale 8, timestamps as UTC datetimes) that fastavro and
confluent-kafka's AvroSerializer write unchanged and read back equal. A bad record raises
`ValidationError(field, reason, reason_code=..., record_id=...)`; `reason_code` is one of
REASON_CODES and is what a dead-letter record should carry. Checks stop at the first failure.

Decisions worth knowing:
- Decimals are Decimal, int or str; floats are refused (binary floats cannot say 0.1 exactly).
  A value must be exactly representable as decimal(18, 8): at most 8 significant fractional digits
  (trailing zeros beyond are fine) and at most 10 integer digits.
- Trade price and quantity must be > 0. Quote prices must be > 0; sizes may be 0 (an empty side).
- A crossed quote (bid > ask, both sides with size) is refused unless the policy allows it: on a
  single venue it signals a broken feed. A locked quote (bid == ask) is accepted.
- Timestamps are ints (microseconds since the epoch) or timezone-aware datetimes; naive datetimes
  are refused. They must lie between policy.min_timestamp and now + policy.max_clock_skew, and
  ingest may precede event by at most policy.max_clock_skew.
- asset_class must be a known AssetClass value *and* match the symbol's routing rule.
- Unknown fields are refused (a misspelt optional field would otherwise vanish silently).
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from k2.platform.errors import ValidationError
from k2.platform.routing import AssetClass, classify
from k2.platform.schemas import schema_fields

__all__ = [
    "DEFAULT_POLICY",
    "REASON_CODES",
    "Side",
    "ValidationPolicy",
    "validate_quote",
    "validate_trade",
]

DECIMAL_PRECISION = 18
DECIMAL_SCALE = 8
MAX_INTEGER_DIGITS = DECIMAL_PRECISION - DECIMAL_SCALE
LONG_MAX = 2**63 - 1
_QUANTUM = Decimal(1).scaleb(-DECIMAL_SCALE)
_LIMIT = Decimal(10) ** MAX_INTEGER_DIGITS
_CTX = decimal.Context(prec=60, Emax=999_999, Emin=-999_999)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EXCHANGE = re.compile(r"[A-Z0-9][A-Z0-9_.-]{0,31}\Z", re.ASCII)  # an ASCII code; \Z: no trailing newline

REASON_CODES = frozenset(
    {
        "not_a_mapping",
        "missing_field",
        "unknown_field",
        "wrong_type",
        "empty",
        "too_long",
        "invalid_format",
        "not_normalized",
        "unknown_enum",
        "unroutable_symbol",
        "asset_class_mismatch",
        "float_not_allowed",
        "not_finite",
        "too_many_fraction_digits",
        "too_many_integer_digits",
        "non_positive",
        "negative",
        "out_of_range",
        "naive_datetime",
        "timestamp_too_old",
        "timestamp_in_future",
        "ingest_before_event",
        "crossed_quote",
        "invalid_unicode",
    }
)


class Side(StrEnum):
    """The Side enum of the trade schema."""

    BUY = "BUY"
    SELL = "SELL"
    UNKNOWN = "UNKNOWN"


def _show(value: Any, limit: int = 60) -> str:
    """A value for an error message: its repr (str for numbers), cut short: a 2 MB field must not make a 2 MB
    message."""
    shown = str(value) if isinstance(value, Decimal) else repr(value)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(shown)} characters)"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ValidationPolicy:
    """Tunable limits; `now` is injectable so tests (and replays of old data) are deterministic."""

    min_timestamp: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_clock_skew: timedelta = timedelta(seconds=60)
    allow_crossed_quotes: bool = False
    now: Callable[[], datetime] = field(default=_utcnow)


DEFAULT_POLICY = ValidationPolicy()


_ASSET_CLASSES = frozenset(a.value for a in AssetClass)
_SIDES = frozenset(s.value for s in Side)


class _Check:
    """Per-record context: knows the record id (for messages) and the policy."""

    def __init__(self, record_id: str | None, policy: ValidationPolicy) -> None:
        self.record_id = record_id
        self.policy = policy
        self.now = policy.now()

    def fail(self, name: str, reason: str, code: str) -> ValidationError:
        return ValidationError(name, reason, reason_code=code, record_id=self.record_id)

    def unicode(self, name: str, value: str) -> str:
        """Text Avro can carry: valid Unicode (a lone surrogate, e.g. from a broken decoder, cannot be UTF-8)."""
        if value.isascii():  # the usual case, and a flag check: no encoding on the hot path
            return value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise self.fail(name, f"is not valid Unicode ({exc.reason} at {exc.start})", "invalid_unicode") from None
        return value

    def identifier(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.fail(name, f"must be a string, got {type(value).__name__}", "wrong_type")
        if not value.strip():
            raise self.fail(name, "must not be empty", "empty")
        if len(value) > 128:
            raise self.fail(name, f"is {len(value)} characters long; at most 128 allowed", "too_long")
        return self.unicode(name, value)

    def symbol(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.fail(name, f"must be a string, got {type(value).__name__}", "wrong_type")
        if not value:
            raise self.fail(name, "must not be empty", "empty")
        if value != value.strip().upper():
            raise self.fail(name, f"{_show(value)} is not canonical (upper-case, no outer spaces)", "not_normalized")
        if classify(value) is None:
            raise self.fail(
                name, f"{_show(value)} matches no routing rule (see k2.platform.routing)", "unroutable_symbol"
            )
        return value

    def exchange(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.fail(name, f"must be a string, got {type(value).__name__}", "wrong_type")
        if not value:
            raise self.fail(name, "must not be empty", "empty")
        if not _EXCHANGE.match(value):
            raise self.fail(name, f"{_show(value)} is not an upper-case venue code (MIC or name)", "invalid_format")
        return value

    def asset_class(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.fail(name, f"must be a string, got {type(value).__name__}", "wrong_type")
        if value not in _ASSET_CLASSES:  # a set lookup: calling the enum per record costs microseconds
            known = ", ".join(a.value for a in AssetClass)
            raise self.fail(name, f"{_show(value)} is not one of {known}", "unknown_enum")
        return value

    def side(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.fail(name, f"must be a string, got {type(value).__name__}", "wrong_type")
        if value not in _SIDES:
            raise self.fail(name, f"{_show(value)} is not one of BUY, SELL, UNKNOWN", "unknown_enum")
        return value

    def decimal(self, name: str, value: Any) -> Decimal:
        if isinstance(value, float):
            raise self.fail(name, "is a float; pass Decimal, int or str for exact values", "float_not_allowed")
        if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
            raise self.fail(name, f"must be Decimal, int or str, got {type(value).__name__}", "wrong_type")
        try:
            number = value if isinstance(value, Decimal) else Decimal(value)
        except (decimal.InvalidOperation, ValueError):
            raise self.fail(name, f"{_show(value)} is not a decimal number", "invalid_format") from None
        if not number.is_finite():
            raise self.fail(name, f"is {number}; only finite numbers are allowed", "not_finite")
        if abs(number) >= _LIMIT:
            raise self.fail(
                name, f"{_show(number)} has more than {MAX_INTEGER_DIGITS} integer digits", "too_many_integer_digits"
            )
        try:
            quantized = number.quantize(_QUANTUM, context=_CTX)
        except decimal.InvalidOperation:
            quantized = None
        if quantized is None or quantized != number:
            raise self.fail(
                name, f"{_show(number)} has more than {DECIMAL_SCALE} fractional digits", "too_many_fraction_digits"
            )
        return abs(quantized) if quantized == 0 else quantized

    def positive(self, name: str, value: Any) -> Decimal:
        number = self.decimal(name, value)
        if number < 0:
            raise self.fail(name, f"is {number}; must be > 0", "negative")
        if number == 0:
            raise self.fail(name, "is 0; must be > 0", "non_positive")
        return number

    def non_negative(self, name: str, value: Any) -> Decimal:
        number = self.decimal(name, value)
        if number < 0:
            raise self.fail(name, f"is {number}; must be >= 0", "negative")
        return number

    def timestamp(self, name: str, value: Any) -> datetime:
        if isinstance(value, bool) or not isinstance(value, int | datetime):
            raise self.fail(
                name, f"must be int microseconds or an aware datetime, got {type(value).__name__}", "wrong_type"
            )
        if isinstance(value, int):
            if not -LONG_MAX - 1 <= value <= LONG_MAX:
                raise self.fail(name, f"{value} does not fit a long", "out_of_range")
            try:
                moment = _EPOCH + timedelta(microseconds=value)
            except OverflowError:
                raise self.fail(name, f"{value} us is outside the datetime range", "out_of_range") from None
        else:
            if value.tzinfo is None or value.utcoffset() is None:
                raise self.fail(name, f"{value.isoformat()} is naive; attach a timezone", "naive_datetime")
            moment = value.astimezone(UTC)
        if moment < self.policy.min_timestamp:
            raise self.fail(
                name, f"{moment.isoformat()} is before {self.policy.min_timestamp.isoformat()}", "timestamp_too_old"
            )
        if moment > self.now + self.policy.max_clock_skew:
            raise self.fail(
                name, f"{moment.isoformat()} is in the future (now {self.now.isoformat()})", "timestamp_in_future"
            )
        return moment

    def sequence(self, name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"must be an int, got {type(value).__name__}", "wrong_type")
        if value < 0:
            raise self.fail(name, f"is {value}; must be >= 0", "negative")
        if value > LONG_MAX:
            raise self.fail(name, f"{value} does not fit a long", "out_of_range")
        return value

    def optional_sequence(self, name: str, value: Any) -> int | None:
        return None if value is None else self.sequence(name, value)

    def conditions(self, name: str, value: Any) -> list[str]:
        if not isinstance(value, list | tuple):
            raise self.fail(name, f"must be a list of strings, got {type(value).__name__}", "wrong_type")
        if len(value) > 32:
            raise self.fail(name, f"has {len(value)} entries; at most 32 allowed", "too_long")
        for item in value:
            if not isinstance(item, str):
                raise self.fail(
                    name, f"contains {type(item).__name__} {_show(item)}; only strings allowed", "wrong_type"
                )
            if not item or len(item) > 16:
                raise self.fail(name, f"entry {_show(item)} must be 1-16 characters", "invalid_format")
            self.unicode(name, item)
        return list(value)


_Checker = Callable[[_Check, str, Any], Any]

_TRADE: dict[str, _Checker] = {
    "trade_id": _Check.identifier,
    "symbol": _Check.symbol,
    "exchange": _Check.exchange,
    "asset_class": _Check.asset_class,
    "price": _Check.positive,
    "quantity": _Check.positive,
    "side": _Check.side,
    "event_timestamp": _Check.timestamp,
    "ingest_timestamp": _Check.timestamp,
    "sequence_number": _Check.sequence,
    "trade_conditions": _Check.conditions,
    "source_sequence": _Check.optional_sequence,
}

_QUOTE: dict[str, _Checker] = {
    "quote_id": _Check.identifier,
    "symbol": _Check.symbol,
    "exchange": _Check.exchange,
    "asset_class": _Check.asset_class,
    "bid_price": _Check.positive,
    "bid_size": _Check.non_negative,
    "ask_price": _Check.positive,
    "ask_size": _Check.non_negative,
    "event_timestamp": _Check.timestamp,
    "ingest_timestamp": _Check.timestamp,
    "sequence_number": _Check.sequence,
    "source_sequence": _Check.optional_sequence,
}


def _defaults(schema_name: str, checkers: Mapping[str, _Checker]) -> dict[str, Any]:
    """Field -> default from the .avsc; also proves the checker table covers exactly the schema."""
    fields = schema_fields(schema_name)
    if list(fields) != list(checkers):
        raise AssertionError(f"validation table for {schema_name} is out of step with {schema_name}_v2.avsc")
    return {name: f["default"] for name, f in fields.items() if "default" in f}


_TRADE_DEFAULTS = _defaults("trade", _TRADE)
_QUOTE_DEFAULTS = _defaults("quote", _QUOTE)


def _validate(
    record: Any,
    id_field: str,
    checkers: Mapping[str, _Checker],
    defaults: Mapping[str, Any],
    policy: ValidationPolicy,
) -> tuple[_Check, dict[str, Any]]:
    if not isinstance(record, Mapping):
        raise ValidationError(
            "<record>", f"must be a mapping, got {type(record).__name__}", reason_code="not_a_mapping"
        )
    raw_id = record.get(id_field)
    check = _Check(raw_id if isinstance(raw_id, str) else None, policy)
    for name in record:
        if name not in checkers:
            raise check.fail(str(name), "is not a field of the schema", "unknown_field")
    out: dict[str, Any] = {}
    for name, checker in checkers.items():
        if name in record:
            out[name] = checker(check, name, record[name])
        elif name in defaults:
            out[name] = list(defaults[name]) if isinstance(defaults[name], list) else defaults[name]
        else:
            raise check.fail(name, "is required but missing", "missing_field")
    routed = classify(out["symbol"])
    if routed is not None and routed.value != out["asset_class"]:
        raise check.fail(
            "asset_class",
            f"is {out['asset_class']!r} but symbol {out['symbol']!r} routes to {routed.value!r}",
            "asset_class_mismatch",
        )
    if out["ingest_timestamp"] < out["event_timestamp"] - policy.max_clock_skew:
        raise check.fail(
            "ingest_timestamp",
            f"{out['ingest_timestamp'].isoformat()} precedes event_timestamp "
            f"{out['event_timestamp'].isoformat()} by more than {policy.max_clock_skew}",
            "ingest_before_event",
        )
    return check, out


def validate_trade(record: Mapping[str, Any], *, policy: ValidationPolicy = DEFAULT_POLICY) -> dict[str, Any]:
    """A schema-ready copy of `record`, or ValidationError naming the first bad field."""
    _, out = _validate(record, "trade_id", _TRADE, _TRADE_DEFAULTS, policy)
    return out


def validate_quote(record: Mapping[str, Any], *, policy: ValidationPolicy = DEFAULT_POLICY) -> dict[str, Any]:
    """A schema-ready copy of `record`, or ValidationError naming the first bad field."""
    check, out = _validate(record, "quote_id", _QUOTE, _QUOTE_DEFAULTS, policy)
    crossed = out["bid_price"] > out["ask_price"] and out["bid_size"] > 0 and out["ask_size"] > 0
    if crossed and not policy.allow_crossed_quotes:
        raise check.fail(
            "bid_price", f"{out['bid_price']} is above ask_price {out['ask_price']} (crossed quote)", "crossed_quote"
        )
    return out
