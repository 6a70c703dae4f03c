"""Poison input without services (issue #10, part 4): ASCII formats are ASCII, text must be valid Unicode,
dead letters are strict JSON and fit the broker, and Arrow-refused rows are isolated, not fatal."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from k2.platform import iceberg_tables as tables
from k2.platform.deadletter import MAX_LETTER_BYTES, DeadLetter, jsonable
from k2.platform.errors import ValidationError
from k2.platform.routing import AssetClass, classify
from k2.platform.validation import validate_trade

NOW_US = int(datetime.now(UTC).timestamp() * 1_000_000)


def trade(**changes: Any) -> dict[str, Any]:
    record = {"trade_id": "T-1", "symbol": "BTC-USD", "exchange": "COINBASE", "asset_class": "crypto",
              "price": Decimal("101.5"), "quantity": Decimal("0.25"), "side": "BUY", "event_timestamp": NOW_US - 10,
              "ingest_timestamp": NOW_US, "sequence_number": 1}  # fmt: skip
    return {**record, **changes}


@pytest.mark.parametrize(
    "symbol",
    [
        "ESZ\u0666",  # a future whose year is an Arabic-Indic digit
        "AAPL\u0662\u0664\u0660\u0666\u0662\u0661C00190000",  # an OCC option with Arabic-Indic date digits
        "US912828U81\u0666",  # an ISIN whose check digit is Arabic-Indic
        "ESZ6\n",  # `$` matches before a trailing newline
    ],
)
def test_symbols_with_non_ascii_digits_or_a_trailing_newline_route_nowhere(symbol: str) -> None:
    assert classify(symbol) is None
    assert classify("ESZ6") is AssetClass.FUTURES and classify("AAPL240621C00190000") is AssetClass.OPTIONS


@pytest.mark.parametrize("exchange", ["XNAS\n", "X\u0661NAS", "ＸＮＡＳ"])
def test_exchange_codes_are_ascii(exchange: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_trade(trade(exchange=exchange))
    assert caught.value.field == "exchange" and caught.value.reason_code == "invalid_format"


@pytest.mark.parametrize(("field", "value"), [("trade_id", "T-\ud800"), ("trade_conditions", ["A\udfff"])])
def test_text_that_is_not_valid_unicode_is_refused_by_name(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_trade(trade(**{field: value}))
    assert caught.value.field == field and caught.value.reason_code == "invalid_unicode"
    str(caught.value).encode("utf-8")  # the message itself is printable


def test_a_huge_value_makes_a_short_message() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_trade(trade(price="0." + "0" * 2_000_000 + "1"))
    assert caught.value.reason_code == "too_many_fraction_digits" and len(str(caught.value)) < 500


def _strict(data: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(data, parse_constant=refuse)


def test_dead_letters_are_strict_json() -> None:
    error = ValidationError("price", "is NaN", reason_code="not_finite", record_id="T-\ud800")
    letter = DeadLetter.from_validation("producer", "trade", error, trade(price=float("nan"), x=float("-inf")))
    data = _strict(letter.to_json())
    assert data["payload"]["price"] == "nan" and data["payload"]["x"] == "-inf"
    assert data["record_id"] == "T-\\ud800"  # kept as its escape: a lone surrogate is not Unicode text
    assert jsonable({"\udc80": "\ud83d"}) == {"\\udc80": "\\ud83d"}


@pytest.mark.parametrize("raw", [b"\x00" + b"\xee" * 800_000, None])
def test_a_dead_letter_too_large_for_the_broker_is_truncated_keeping_reason_and_offsets(raw: bytes | None) -> None:
    error = ValidationError("<value>", "x" * 5000, reason_code="undecodable", record_id="T-" + "9" * 5000)
    payload = None if raw else trade(exchange="E" * 2_000_000)
    where = {"source_topic": "trades", "source_partition": 2, "source_offset": 9274}
    letter = DeadLetter.from_validation("writer", "trade", error, payload, **where)
    if raw:
        letter = letter.with_raw(raw)
    original = raw or json.dumps(letter.payload, separators=(",", ":"), sort_keys=True).encode()
    fitted, data = letter.fitted()
    assert len(data) <= MAX_LETTER_BYTES and _strict(data)
    assert fitted.truncated and fitted.payload_size == len(original)
    assert (fitted.source_topic, fitted.source_partition, fitted.source_offset) == ("trades", 2, 9274)
    assert fitted.reason_code == "undecodable" and fitted.reason.startswith("xxx") and fitted.record_id
    prefix = base64.b64decode(fitted.payload_base64 or "")
    assert len(prefix) > 100_000 and original.startswith(prefix)
    small = DeadLetter.from_validation("writer", "trade", error, None, **where)
    assert small.fitted() == (small, small.to_json())  # a letter that fits is sent as it is


def test_rows_arrow_refuses_are_taken_out_of_the_batch_with_their_positions() -> None:
    buffer = tables.TableBuffer("trade")
    for offset in range(5):
        record = validate_trade(trade(trade_id=f"T-{offset}"))
        if offset == 3:
            record["price"] = Decimal("1e30")  # what validation never lets through: does not fit decimal(18, 8)
        buffer.add(record, 1, 100 + offset)
    with pytest.raises(tables.ConversionFailed):
        tables.rows_to_arrow("trade", buffer.columns)
    bad = buffer.drop_unconvertible()
    assert [(row["trade_id"], partition, offset) for row, partition, offset, _ in bad] == [("T-3", 1, 103)]
    assert buffer.size == 4 and tables.rows_to_arrow("trade", buffer.columns).num_rows == 4
