"""Schema evolution without services: which added fields are carried, validation of them, decoding a newer
schema's bytes, buffering them, and evolving a real Iceberg table (pyiceberg's SQL catalog on SQLite)."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.types import LongType, StringType

from k2.platform import iceberg_tables as tables
from k2.platform.errors import ValidationError
from k2.platform.evolution import TableColumns, extra_fields, reader_schema, validator
from k2.platform.schemas import load_schema, parsed_schema
from k2.platform.validation import validate_trade

NOW_US = 1_790_000_000_000_000


def trade(**changes: Any) -> dict[str, Any]:
    record = {
        "trade_id": "T-1", "symbol": "BTC-USD", "exchange": "COINBASE", "asset_class": "crypto",
        "price": Decimal("100.5"), "quantity": Decimal("2"), "side": "BUY", "event_timestamp": NOW_US,
        "ingest_timestamp": NOW_US, "sequence_number": 1,
    }  # fmt: skip
    return {**record, **changes}


def with_fields(*fields: dict[str, Any]) -> dict[str, Any]:
    schema = load_schema("trade")
    schema["fields"] += fields
    return schema


OPTIONAL_LONG = {"name": "venue_seq", "type": ["null", "long"], "default": None}


def test_v3_adds_one_optional_string() -> None:
    extras = extra_fields(load_schema("trade", 3), "trade")
    assert list(extras) == ["liquidity_flag"]
    field = extras["liquidity_flag"]
    assert field.optional and field.avro_type == "string" and field.iceberg_type == StringType()
    assert extra_fields(load_schema("trade"), "trade") == {}


@pytest.mark.parametrize(
    ("field", "why"),
    [
        ({"name": "venue_order_id", "type": "string"}, "is required"),
        ({"name": "x", "type": ["string", "null"], "default": "a"}, "not optional"),
        ({"name": "x", "type": {"type": "array", "items": "string"}}, "only primitives"),
        ({"name": "kafka_offset", "type": ["null", "long"], "default": None}, "reserves"),
    ],
)
def test_fields_the_tables_cannot_take_are_refused_naming_the_field(field: dict[str, Any], why: str) -> None:
    with pytest.raises(ValidationError) as refused:
        extra_fields(with_fields(field), "trade")
    assert refused.value.field == field["name"] and refused.value.reason_code == "schema_evolution"
    assert why in refused.value.reason and "Remedy" in str(refused.value)


def test_another_record_type_is_not_an_evolution() -> None:
    other = {"type": "record", "name": "Other", "fields": [{"name": "x", "type": "long"}]}
    assert extra_fields(other, "trade") == {}


def test_producer_validation_checks_added_fields_by_type() -> None:
    validate = validator("trade", load_schema("trade", 3))
    assert validate(trade(liquidity_flag="ADD"))["liquidity_flag"] == "ADD"
    assert validate(trade())["liquidity_flag"] is None
    assert validate(trade())["price"] == validate_trade(trade())["price"]
    with pytest.raises(ValidationError, match="liquidity_flag") as wrong:
        validate(trade(liquidity_flag=7))
    assert wrong.value.reason_code == "wrong_type"
    required = validator("trade", with_fields({"name": "venue_order_id", "type": "long"}))
    with pytest.raises(ValidationError) as missing:
        required(trade())
    assert missing.value.reason_code == "missing_field"
    with pytest.raises(ValidationError):
        required(trade(venue_order_id=True))  # a bool is not a long
    with pytest.raises(ValidationError, match="unknown_field"):
        validate(trade(unheard_of=1))  # the v2 rules still apply to everything else


def test_newer_bytes_decode_with_the_bundled_fields_plus_the_added_ones() -> None:
    v3 = fastavro.parse_schema(load_schema("trade", 3))
    out = io.BytesIO()
    fastavro.schemaless_writer(out, v3, {**validate_trade(trade()), "liquidity_flag": "REMOVE"})
    extras = extra_fields(load_schema("trade", 3), "trade")
    record = fastavro.schemaless_reader(io.BytesIO(out.getvalue()), v3, reader_schema("trade", extras))
    assert record["liquidity_flag"] == "REMOVE" and record["price"] == Decimal("100.5")
    plain = fastavro.schemaless_reader(io.BytesIO(out.getvalue()), v3, parsed_schema("trade"))
    assert "liquidity_flag" not in plain  # the bundled reader alone would drop it


def test_buffer_fills_an_added_column_with_nulls_before_and_after_its_rows() -> None:
    extras = extra_fields(with_fields(OPTIONAL_LONG), "trade")
    buffer = tables.TableBuffer("trade")
    buffer.add(validate_trade(trade(trade_id="A")), 0, 10)
    buffer.add({**validate_trade(trade(trade_id="B")), "venue_seq": 5}, 0, 11, extras)
    buffer.add(validate_trade(trade(trade_id="C")), 0, 12)
    data = tables.rows_to_arrow("trade", buffer.columns, buffer.extra)
    assert data.column("venue_seq").to_pylist() == [None, 5, None]
    assert data.schema.field("venue_seq").nullable and data.schema.names[-1] == "venue_seq"
    assert buffer.keep_from({0: 11}) == 1 and buffer.columns["venue_seq"] == [5, None]


@pytest.fixture
def catalog(tmp_path: Path) -> SqlCatalog:
    return SqlCatalog("t", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}/warehouse")


def test_table_gains_the_column_once_and_old_rows_read_null(catalog: SqlCatalog) -> None:
    table = tables.open_table(catalog, "ns", "trade", "crypto", create=True)
    buffer = tables.TableBuffer("trade")
    buffer.add(validate_trade(trade(trade_id="old")), 0, 0)
    tables.write_exactly_once(table.refresh, buffer, "t", {0: 1})
    extras = extra_fields(with_fields(OPTIONAL_LONG), "trade")
    columns = TableColumns()
    columns.ensure("key", extras, lambda _key: table.refresh())
    columns.ensure("key", extras, lambda _key: pytest.fail("asked the catalog again for a known column"))
    assert table.refresh().schema().find_field("venue_seq").field_type == LongType()
    buffer = tables.TableBuffer("trade")
    buffer.add({**validate_trade(trade(trade_id="new")), "venue_seq": 9}, 0, 1, extras)
    tables.write_exactly_once(table.refresh, buffer, "t", {0: 2})
    rows = {r["trade_id"]: r["venue_seq"] for r in table.refresh().scan().to_arrow().to_pylist()}
    assert rows == {"old": None, "new": 9}


def test_a_column_of_another_type_is_a_conflict_not_a_rewrite(catalog: SqlCatalog) -> None:
    table = tables.open_table(catalog, "ns", "trade", "crypto", create=True)
    TableColumns().ensure("key", extra_fields(load_schema("trade", 3), "trade"), lambda _key: table.refresh())
    as_long = extra_fields(with_fields({"name": "liquidity_flag", "type": ["null", "long"], "default": None}), "trade")
    with pytest.raises(ValidationError) as conflict:
        TableColumns().ensure("key", as_long, lambda _key: table.refresh())
    assert conflict.value.reason_code == "schema_conflict" and "string" in conflict.value.reason
    assert table.refresh().schema().find_field("liquidity_flag").field_type == StringType()


def test_a_concurrent_schema_change_is_re_read_and_retried(catalog: SqlCatalog) -> None:
    table = tables.open_table(catalog, "ns", "trade", "crypto", create=True)
    stale = catalog.load_table(table.name())
    with table.update_schema() as update:  # another writer adds a column first
        update.add_column("other", StringType())
    handed = iter([stale, table.refresh()])
    TableColumns().ensure("key", extra_fields(load_schema("trade", 3), "trade"), lambda _key: next(handed))
    names = [f.name for f in table.refresh().schema().fields]
    assert names[-2:] == ["other", "liquidity_flag"]


def test_a_table_that_keeps_changing_gives_up_with_the_commit_error(catalog: SqlCatalog) -> None:
    table = tables.open_table(catalog, "ns", "trade", "crypto", create=True)

    def always_stale(_key: Any) -> Any:
        stale = catalog.load_table(table.name())
        with table.refresh().update_schema() as update:
            update.add_column(f"c{len(table.refresh().schema().fields)}", StringType())
        return stale

    with pytest.raises(CommitFailedException):
        TableColumns(attempts=2).ensure("key", extra_fields(load_schema("trade", 3), "trade"), always_stale)
