"""Writer building blocks without services: decoding and its failure classes, exactly-once appends
(on a SQLite catalog with a local warehouse), offsets bookkeeping, failure classification."""

from __future__ import annotations

import io
import json
import struct
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pytest
import sqlalchemy.exc
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry._sync.mock_schema_registry_client import MockSchemaRegistryClient
from pyiceberg.catalog.sql import SqlCatalog

from k2.platform import iceberg_tables as tables
from k2.platform.config import PlatformConfig
from k2.platform.consumer import RecordDecoder
from k2.platform.errors import (
    CatalogUnavailable,
    SchemaRegistryUnavailable,
    StorageUnavailable,
    ValidationError,
    WriterError,
)
from k2.platform.schemas import load_schema_str, parsed_schema
from k2.platform.table_audit import audit_table
from k2.platform.validation import validate_trade

CONFIG = PlatformConfig(
    kafka_bootstrap="127.0.0.1:9",
    schema_registry_url="http://127.0.0.1:9",
    s3_endpoint="http://127.0.0.1:9",
    s3_access_key="k",
    s3_secret_key="s",
    s3_bucket="warehouse",
    postgres_uri="postgresql://k2:pw@127.0.0.1:9/k2",
    registry_timeout=1.0,
)


def trade(i: int, symbol: str = "BTC-USD", asset_class: str = "crypto") -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp() * 1_000_000)
    return validate_trade(
        {
            "trade_id": f"T-{i}", "symbol": symbol, "exchange": "XNAS", "asset_class": asset_class,
            "price": Decimal("101.25") + i, "quantity": Decimal("0.5"), "side": "SELL", "event_timestamp": now - i,
            "ingest_timestamp": now, "sequence_number": i, "trade_conditions": ["A"] if i % 2 else [],
        }
    )  # fmt: skip


def framed(schema_id: int, record: dict[str, Any], schema: Any = None) -> bytes:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema or parsed_schema("trade"), record)
    return struct.pack(">BI", 0, schema_id) + body.getvalue()


@pytest.fixture
def decoder() -> tuple[RecordDecoder, int]:
    registry = MockSchemaRegistryClient({"url": "mock://writer"})
    schema_id = registry.register_schema("trades-value", Schema(load_schema_str("trade"), "AVRO"))
    return RecordDecoder(CONFIG, registry=registry), schema_id


def test_decoder_accepts_a_valid_record_and_classifies_every_bad_one(decoder: tuple[RecordDecoder, int]) -> None:
    dec, schema_id = decoder
    good = trade(1)
    assert dec.decode("trade", framed(schema_id, good)) == (good, schema_id)
    rogue = {**good, "asset_class": "equities"}  # bypassed validation: mismatches its symbol
    cases = {
        b"": "empty_value",
        b"\x01\x00\x00\x00\x01garbage": "undecodable",
        framed(schema_id, good) + b"\x00": "undecodable",
        framed(4242, good): "unknown_schema_id",
        framed(schema_id, rogue): "asset_class_mismatch",
    }
    for value, code in cases.items():
        with pytest.raises(ValidationError) as caught:
            dec.decode("trade", value)
        assert caught.value.reason_code == code, value


def test_decoder_refuses_a_schema_that_does_not_resolve(decoder: tuple[RecordDecoder, int]) -> None:
    dec, _ = decoder
    other = '{"type": "record", "name": "Other", "fields": [{"name": "x", "type": "long"}]}'
    other_id = dec.registry.register_schema("other-value", Schema(other, "AVRO"))
    value = framed(other_id, {"x": 1}, fastavro.parse_schema(json.loads(other)))
    with pytest.raises(ValidationError) as caught:
        dec.decode("trade", value)
    assert caught.value.reason_code == "schema_mismatch"


def test_decoder_reports_a_registry_outage_as_retryable_not_as_bad_data() -> None:
    dec = RecordDecoder(CONFIG, registry=SchemaRegistryClient(CONFIG.registry_conf()))
    with pytest.raises(SchemaRegistryUnavailable, match="schema id 5"):
        dec.decode("trade", framed(5, trade(1)))


@pytest.fixture
def catalog(tmp_path: Path) -> SqlCatalog:
    return SqlCatalog("unit", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}/warehouse")


def buffer_of(records: list[dict[str, Any]], partition: int, first_offset: int) -> tables.TableBuffer:
    buffer = tables.TableBuffer("trade")
    for offset, record in enumerate(records, start=first_offset):
        buffer.add(record, partition, offset)
    return buffer


def test_appends_carry_offsets_and_a_replay_is_dropped(catalog: SqlCatalog) -> None:
    table = tables.open_table(catalog, "market", "trade", "crypto", create=True)
    assert table is not None and tables.stored_offsets(table) == {}
    first = [trade(i) for i in range(10)]
    assert tables.write_exactly_once(table.refresh, buffer_of(first, 0, 0), "t", {0: 10, 1: 3}) == (10, 0)
    assert tables.stored_offsets(table.refresh()) == {"t": {0: 10, 1: 3}}
    # a restart re-reads offsets 5..14 of partition 0: 5..9 are in the table already
    replay = [trade(i) for i in range(5, 15)]
    assert tables.write_exactly_once(table.refresh, buffer_of(replay, 0, 5), "t", {0: 15}) == (5, 5)
    assert tables.stored_offsets(table.refresh()) == {"t": {0: 15, 1: 3}}
    rows = table.scan().to_arrow()
    assert sorted(rows.column("trade_id").to_pylist()) == sorted(f"T-{i}" for i in range(15))
    assert tables.write_exactly_once(table.refresh, buffer_of(replay, 0, 5), "t", {0: 15}) == (0, 10)
    assert table.refresh().scan().to_arrow().num_rows == 15


def test_a_commit_that_loses_a_race_is_retried_after_a_reread(catalog: SqlCatalog) -> None:
    table = tables.open_table(catalog, "market", "trade", "equities", create=True)
    stale = catalog.load_table(tables.table_identifier("market", "trade", "equities"))
    tables.write_exactly_once(table.refresh, buffer_of([trade(0, "AAPL", "equities")], 1, 0), "t", {1: 1})
    calls = iter([stale, table])  # first attempt on a stale view: CommitFailedException, then a fresh one
    written = tables.write_exactly_once(
        lambda: next(calls), buffer_of([trade(1, "AAPL", "equities")], 1, 1), "t", {1: 2}
    )
    assert written == (1, 0)
    assert table.refresh().scan().to_arrow().num_rows == 2 and tables.stored_offsets(table) == {"t": {1: 2}}


def test_schemas_agree_and_names_are_per_asset_class() -> None:
    for kind in tables.KINDS:
        assert tables.iceberg_schema(kind).as_arrow().names == tables.arrow_schema(kind).names
    assert tables.table_identifier("market", "trade", "crypto") == "market.trades_crypto"
    assert tables.merge_offsets({"t": {0: 5, 1: 9}}, {"t": {0: 7}, "u": {2: 1}}) == {"t": {0: 7, 1: 9}, "u": {2: 1}}
    empty = tables.rows_to_arrow("quote", {name: [] for name in tables.column_names("quote")})
    assert isinstance(empty, pa.Table) and empty.num_rows == 0


def test_failures_map_to_the_service_that_failed() -> None:
    db = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
    assert isinstance(tables.classify_failure(db, "loading"), CatalogUnavailable)
    assert isinstance(tables.classify_failure(OSError("AWS Error NETWORK_CONNECTION"), "reading"), StorageUnavailable)
    assert isinstance(tables.classify_failure(ValueError("bug"), "x"), ValueError)
    already = WriterError("typed")
    assert tables.classify_failure(already, "x") is already


def test_a_stale_writer_does_not_append_rows_another_writer_just_committed(catalog: SqlCatalog) -> None:
    """Issue #10's minimal repro: A reads the table; B appends partition-0 rows 0-9; A appends the same rows from
    its stale view. pyiceberg's own commit retry would rebase A's append: 20 rows and offsets from A's stale view."""
    table = tables.open_table(catalog, "market", "trade", "crypto", create=True)
    rows = [trade(i) for i in range(10)]
    stale_a = catalog.load_table(tables.table_identifier("market", "trade", "crypto"))
    assert tables.write_exactly_once(table.refresh, buffer_of(rows, 0, 0), "t", {0: 10}) == (10, 0)  # B
    views = iter([stale_a])
    written = tables.write_exactly_once(
        lambda: next(views, None) or table.refresh(), buffer_of(rows, 0, 0), "t", {0: 10}
    )
    assert written == (0, 10)
    assert table.refresh().scan().to_arrow().num_rows == 10
    assert audit_table(table) == []


def test_tables_made_before_the_fix_lose_pyicebergs_internal_retry_before_k2_appends(catalog: SqlCatalog) -> None:
    schema = tables.iceberg_schema("trade")
    catalog.create_namespace("market")
    old = catalog.create_table("market.trades_fx", schema=schema, partition_spec=tables.partition_spec(schema))
    assert "commit.retry.num-retries" not in old.properties
    opened = tables.open_table(catalog, "market", "trade", "fx", create=False)
    assert opened is not None and opened.properties["commit.retry.num-retries"] == "0"


def test_the_audit_finds_offsets_that_went_backwards_and_rows_above_them(catalog: SqlCatalog) -> None:
    table = tables.open_table(catalog, "market", "trade", "crypto", create=True)
    assert table is not None
    tables.write_exactly_once(table.refresh, buffer_of([trade(i) for i in range(10)], 0, 0), "t", {0: 10})
    assert audit_table(table.refresh()) == []
    # what pyiceberg's internal retry used to commit: rows 10-14, but the offsets of a stale view (partition 0 at 3)
    late = buffer_of([trade(i) for i in range(10, 15)], 0, 10)
    tables.append_with_offsets(table.refresh(), tables.rows_to_arrow("trade", late.columns), {"t": {0: 3}})
    problems = audit_table(table.refresh())
    assert [(p.kind, p.partition) for p in problems] == [("offsets_regressed", 0), ("row_above_offsets", 0)]
    assert "from 10 back to 3" in problems[0].detail and "offset 14" in problems[1].detail
    tables.append_with_offsets(table.refresh(), tables.rows_to_arrow("trade", late.columns), {"t": {0: 15}})
    assert [p.kind for p in audit_table(table.refresh())].count("duplicate_position") == 5
