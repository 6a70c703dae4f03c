"""The lakehouse side: the SQL catalog, the table schemas, and appends that carry their Kafka offsets.

Tables: `<namespace>.trades_<asset_class>` and `<namespace>.quotes_<asset_class>` (namespace `market`),
one per asset class, partitioned by day(event_timestamp), created on first use.

Exactly-once bookkeeping lives in the tables themselves: every append's snapshot summary carries
`k2.offsets` = {"topic": {"partition": next_offset}}, meaning "every record of that partition below
next_offset that belongs in this table is in this table". A writer that restarts (or retries a commit
whose outcome it never saw) reads it back and drops rows below it, so a row is never written twice and
Kafka offsets may lag behind without harm.

That bookkeeping holds only if a commit that lost a race reaches K2: pyiceberg (0.12) would otherwise retry
it by itself (`commit.retry.num-retries`, default 4), rebasing the append onto the newer snapshot while
keeping the stale `k2.offsets` it was built with. Rows another writer had just committed were then
appended again and the recorded offsets went backwards. K2's tables therefore carry
`commit.retry.num-retries=0` (set at creation, and on any older table before K2 appends to it), so a
conflict raises CommitFailedException and `write_exactly_once` re-reads the table and drops what is there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table, TableProperties
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.transforms import DayTransform
from pyiceberg.types import (
    DecimalType,
    IntegerType,
    ListType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

from k2.platform.config import PlatformConfig
from k2.platform.errors import CatalogUnavailable, PlatformError, StorageUnavailable, WriterError
from k2.platform.routing import AssetClass

__all__ = [
    "KINDS",
    "OFFSETS_PROPERTY",
    "ConversionFailed",
    "TableBuffer",
    "append_with_offsets",
    "arrow_schema",
    "build_catalog",
    "classify_failure",
    "iceberg_schema",
    "offsets_of",
    "open_table",
    "stored_offsets",
    "table_identifier",
    "without_internal_retry",
    "write_exactly_once",
]

log = logging.getLogger(__name__)

OFFSETS_PROPERTY = "k2.offsets"
# pyiceberg must not retry a conflicting commit itself (see the module docstring): the conflict must reach K2
NO_INTERNAL_RETRY = {TableProperties.COMMIT_NUM_RETRIES: "0"}
KINDS = ("trade", "quote")
Offsets = dict[str, dict[int, int]]  # topic -> partition -> next offset

_DEC = DecimalType(18, 8)
_COMMON_HEAD = [
    ("symbol", StringType(), True),
    ("exchange", StringType(), True),
    ("asset_class", StringType(), True),
]
_TAIL = [
    ("event_timestamp", TimestamptzType(), True),
    ("ingest_timestamp", TimestamptzType(), True),
    ("sequence_number", LongType(), True),
]
_LINEAGE = [("kafka_partition", IntegerType(), True), ("kafka_offset", LongType(), True)]
_COLUMNS: dict[str, list[tuple[str, Any, bool]]] = {
    "trade": [
        ("trade_id", StringType(), True),
        *_COMMON_HEAD,
        ("price", _DEC, True),
        ("quantity", _DEC, True),
        ("side", StringType(), True),
        *_TAIL,
        ("trade_conditions", "list<string>", True),
        ("source_sequence", LongType(), False),
        *_LINEAGE,
    ],
    "quote": [
        ("quote_id", StringType(), True),
        *_COMMON_HEAD,
        ("bid_price", _DEC, True),
        ("bid_size", _DEC, True),
        ("ask_price", _DEC, True),
        ("ask_size", _DEC, True),
        *_TAIL,
        ("source_sequence", LongType(), False),
        *_LINEAGE,
    ],
}
LIST_ELEMENT_ID = 100  # field id of trade_conditions' element


def column_names(kind: str) -> list[str]:
    return [name for name, _, _ in _COLUMNS[kind]]


def iceberg_schema(kind: str) -> Schema:
    fields = []
    for field_id, (name, typ, required) in enumerate(_COLUMNS[kind], start=1):
        if typ == "list<string>":
            typ = ListType(LIST_ELEMENT_ID, StringType(), element_required=True)
        fields.append(NestedField(field_id, name, typ, required=required))
    return Schema(*fields)


def _arrow_type(typ: Any) -> pa.DataType:
    if typ == "list<string>":
        return pa.list_(pa.field("element", pa.string(), nullable=False))
    return {
        StringType(): pa.string(),
        LongType(): pa.int64(),
        IntegerType(): pa.int32(),
        TimestamptzType(): pa.timestamp("us", tz="UTC"),
        _DEC: pa.decimal128(18, 8),
    }[typ]


def arrow_schema(kind: str) -> pa.Schema:
    """The Arrow schema appends must use (required columns are non-nullable, as Iceberg checks)."""
    return pa.schema([pa.field(name, _arrow_type(typ), nullable=not req) for name, typ, req in _COLUMNS[kind]])


def partition_spec(schema: Schema) -> PartitionSpec:
    source = schema.find_field("event_timestamp").field_id
    return PartitionSpec(PartitionField(source_id=source, field_id=1000, transform=DayTransform(), name="event_day"))


def table_identifier(namespace: str, kind: str, asset_class: str | AssetClass) -> str:
    return f"{namespace}.{kind}s_{AssetClass(asset_class).value}"


def build_catalog(config: PlatformConfig) -> SqlCatalog:
    """A new SqlCatalog (it connects at once); callers rebuild it after a failure rather than reuse it."""
    try:
        return SqlCatalog(config.catalog_name, **config.catalog_properties())
    except Exception as exc:
        raise classify_failure(exc, "opening the Iceberg catalog") from exc


def open_table(catalog: SqlCatalog, namespace: str, kind: str, asset_class: str, *, create: bool) -> Table | None:
    """Load a table; with create=True make the namespace and table first if missing. None if absent."""
    ident = table_identifier(namespace, kind, asset_class)
    try:
        return without_internal_retry(catalog.load_table(ident))
    except NoSuchTableError:
        if not create:
            return None
    catalog.create_namespace_if_not_exists(namespace)
    schema = iceberg_schema(kind)
    table = catalog.create_table_if_not_exists(
        ident, schema=schema, partition_spec=partition_spec(schema), properties=NO_INTERNAL_RETRY
    )
    log.info("iceberg: created table %s", ident)
    return without_internal_retry(table)  # created earlier by someone else, perhaps without the property


def without_internal_retry(table: Table) -> Table:
    """The table, with pyiceberg's own commit retry switched off (a metadata-only commit, once per table).

    Raises CommitFailedException when the table changed meanwhile: the caller re-reads it, as for an append.
    """
    if all(table.properties.get(name) == value for name, value in NO_INTERNAL_RETRY.items()):
        return table
    log.info("iceberg: switching off pyiceberg's internal commit retry on %s", table.name())
    return table.transaction().set_properties(NO_INTERNAL_RETRY).commit_transaction()


def offsets_of(snapshot: Snapshot) -> Offsets | None:
    """The `k2.offsets` a snapshot recorded, or None for a snapshot K2 did not write."""
    raw = snapshot.summary[OFFSETS_PROPERTY] if snapshot.summary is not None else None
    if not raw:
        return None
    return {topic: {int(p): int(o) for p, o in parts.items()} for topic, parts in json.loads(raw).items()}


def stored_offsets(table: Table) -> Offsets:
    """The `k2.offsets` of the newest snapshot that has them (walking back past foreign snapshots)."""
    snapshot = table.current_snapshot()
    while snapshot is not None:
        offsets = offsets_of(snapshot)
        if offsets is not None:
            return offsets
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    return {}


def merge_offsets(*maps: Mapping[str, Mapping[int, int]]) -> Offsets:
    merged: Offsets = {}
    for offsets in maps:
        for topic, parts in offsets.items():
            target = merged.setdefault(topic, {})
            for partition, offset in parts.items():
                target[partition] = max(offset, target.get(partition, -1))
    return merged


def append_with_offsets(table: Table, data: pa.Table, offsets: Offsets) -> None:
    """One Iceberg commit: the rows and the offsets they bring the table up to, atomically."""
    encoded = json.dumps({t: {str(p): o for p, o in sorted(ps.items())} for t, ps in sorted(offsets.items())})
    table.append(data, snapshot_properties={OFFSETS_PROPERTY: encoded})


class TableBuffer:
    """Column lists for one table (cheaper than row dicts, and Arrow wants columns anyway). Columns a newer
    schema adds (`extra`: name -> k2.platform.evolution.ExtraField) are null in rows that lack them."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.columns: dict[str, list[Any]] = {name: [] for name in column_names(kind)}
        self.extra: dict[str, Any] = {}
        self.size = 0

    def add(self, record: dict[str, Any], partition: int, offset: int, extra: Mapping[str, Any] | None = None) -> None:
        for name in extra or ():
            if name not in self.columns:
                self.columns[name] = [None] * self.size
                self.extra[name] = extra[name]  # type: ignore[index]
        for name, values in self.columns.items():
            values.append(record.get(name))
        self.columns["kafka_partition"][-1] = partition
        self.columns["kafka_offset"][-1] = offset
        self.size += 1

    def drop_unconvertible(self) -> list[tuple[dict[str, Any], int, int, str]]:
        """Remove the rows Arrow refuses, one by one; returns each as (row, partition, offset, why)."""
        bad: list[tuple[dict[str, Any], int, int, str]] = []
        keep = []
        for i in range(self.size):
            row = {name: values[i] for name, values in self.columns.items()}
            try:
                rows_to_arrow(self.kind, {name: [value] for name, value in row.items()}, self.extra)
            except ConversionFailed as exc:
                bad.append((row, row["kafka_partition"], row["kafka_offset"], str(exc.__cause__ or exc)))
            else:
                keep.append(i)
        if bad:
            self.columns = {name: [values[i] for i in keep] for name, values in self.columns.items()}
            self.size = len(keep)
        return bad

    def keep_from(self, stored: dict[int, int]) -> int:
        """Drop rows already in the table (offset below its stored offset); returns how many."""
        parts, offs = self.columns["kafka_partition"], self.columns["kafka_offset"]
        keep = [i for i in range(self.size) if offs[i] >= stored.get(parts[i], -1)]
        dropped = self.size - len(keep)
        if dropped:
            self.columns = {name: [values[i] for i in keep] for name, values in self.columns.items()}
            self.size = len(keep)
        return dropped


def write_exactly_once(
    get_table: Callable[[], Table], buffer: TableBuffer, topic: str, positions: Mapping[int, int], attempts: int = 5
) -> tuple[int, int]:
    """Append `buffer` unless (part of) it is already in the table; returns (rows written, rows dropped).

    `positions` are the next offsets consumed from `topic`: every buffered row comes from below them, and
    the table is brought up to them. Retries a concurrent commit after re-reading the table.
    """
    dropped = 0
    for attempt in range(attempts):
        table = get_table()
        try:
            table = without_internal_retry(table)
            stored = stored_offsets(table)
            dropped += buffer.keep_from(stored.get(topic, {}))
            if buffer.size == 0:
                return 0, dropped
            append_with_offsets(
                table,
                rows_to_arrow(buffer.kind, buffer.columns, buffer.extra),
                merge_offsets(stored, {topic: dict(positions)}),
            )
        except CommitFailedException:
            log.info("iceberg: concurrent commit on %s; re-reading it (attempt %d)", table.name(), attempt + 1)
            continue
        return buffer.size, dropped
    raise WriterError(
        f"table for {buffer.kind}s from {topic} kept changing under concurrent commits ({attempts} attempts)",
        remedy="run one writer group per table set",
    )


class ConversionFailed(WriterError):
    """Buffered rows that Arrow refuses (a value validation let through): the writer dead-letters them."""


def rows_to_arrow(kind: str, columns: Mapping[str, list[Any]], extra: Mapping[str, Any] | None = None) -> pa.Table:
    """The buffered rows as Arrow; `extra` columns (ExtraFields of a newer schema) after the bundled ones."""
    schema = arrow_schema(kind)
    for name, field in (extra or {}).items():
        schema = schema.append(pa.field(name, field.arrow_type, nullable=True))
    try:
        return pa.Table.from_arrays([pa.array(columns[f.name], type=f.type) for f in schema], schema=schema)
    except (pa.ArrowException, ArithmeticError, TypeError, ValueError) as exc:
        raise ConversionFailed(
            f"{kind} rows do not convert to Arrow: {type(exc).__name__}: {str(exc)[:300]}",
            remedy="the offending rows are dead-lettered and the rest written",
        ) from exc


def classify_failure(exc: BaseException, doing: str) -> PlatformError | BaseException:
    """Map a dependency failure to the typed error naming the service: catalog DB vs object store."""
    if isinstance(exc, PlatformError):
        return exc
    if isinstance(exc, CommitFailedException):
        return exc  # a concurrent commit: retry after a refresh, not an outage
    names = {cls.__module__.split(".")[0] for cls in type(exc).__mro__}
    if names & {"sqlalchemy", "psycopg", "psycopg2"}:
        return CatalogUnavailable(f"{doing}: {type(exc).__name__}: {_first_line(exc)}")
    if isinstance(exc, OSError | TimeoutError) or names & {"botocore", "s3fs", "aiohttp"}:
        return StorageUnavailable(f"{doing}: {type(exc).__name__}: {_first_line(exc)}")
    return exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [""])[0][:300]


def count_rows(tables: Iterable[Table]) -> int:
    return sum(t.scan(selected_fields=("kafka_offset",)).to_arrow().num_rows for t in tables)
