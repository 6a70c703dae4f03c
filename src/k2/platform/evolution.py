"""Schema evolution: records written with a newer schema than the one K2 ships, end to end.

The bundled v2 schemas are what K2 validates. A newer schema may add fields (trade v3 adds `liquidity_flag`);
such a record is the v2 record plus *extra fields*. This module decides which extra fields can be carried
and carries them:

- producer: `validator(kind, schema)` validates the v2 part as always and each extra field by its Avro type;
- writer: `extra_fields(writer_schema, kind)` names the extra fields of a registered schema; only optional
  ones of a primitive type can be carried (a union with null, default null: old rows read them as null), any
  other change is refused with a ValidationError (the record is dead-lettered with its schema id, never
  written half-understood); `reader_schema` decodes the v2 part as before plus the extras;
- Iceberg: `TableColumns.ensure` adds each extra field to the table as an optional column, once per table
  and field, and refuses a field whose name the table already holds with another type.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import fastavro
import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.types import BooleanType, DoubleType, FloatType, IcebergType, IntegerType, LongType, StringType

from k2.platform.errors import ValidationError
from k2.platform.schemas import load_schema, schema_fields
from k2.platform.validation import DEFAULT_POLICY, ValidationPolicy, validate_quote, validate_trade

__all__ = ["ExtraField", "TableColumns", "extra_fields", "reader_schema", "validator"]

log = logging.getLogger(__name__)

# Avro primitive -> (Iceberg type, Arrow type, Python types a value may have)
_PRIMITIVES: dict[str, tuple[IcebergType, pa.DataType, tuple[type, ...]]] = {
    "string": (StringType(), pa.string(), (str,)),
    "long": (LongType(), pa.int64(), (int,)),
    "int": (IntegerType(), pa.int32(), (int,)),
    "double": (DoubleType(), pa.float64(), (float, int)),
    "float": (FloatType(), pa.float32(), (float, int)),
    "boolean": (BooleanType(), pa.bool_(), (bool,)),
}
_RESERVED = frozenset({"kafka_partition", "kafka_offset"})  # columns the writer adds to every row
_VALIDATORS = {"trade": validate_trade, "quote": validate_quote}
MAX_STRING = 1024


@dataclass(frozen=True)
class ExtraField:
    """A field a newer schema adds to the bundled one: its Avro definition and where its values go."""

    name: str
    avro_type: str  # the primitive: string, long, int, double, float, boolean
    optional: bool  # a union with null and default null: old records have it as null
    definition: dict[str, Any]  # the Avro field, for reader schemas

    @property
    def iceberg_type(self) -> IcebergType:
        return _PRIMITIVES[self.avro_type][0]

    @property
    def arrow_type(self) -> pa.DataType:
        return _PRIMITIVES[self.avro_type][1]

    def check(self, value: Any, record_id: str | None) -> Any:
        """The value if it fits the field; ValidationError naming the field otherwise."""
        if value is None:
            if self.optional:
                return None
            raise ValidationError(
                self.name, "is required but missing", reason_code="missing_field", record_id=record_id
            )
        allowed = _PRIMITIVES[self.avro_type][2]
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            raise ValidationError(
                self.name,
                f"must be {self.avro_type}, got {type(value).__name__}",
                reason_code="wrong_type",
                record_id=record_id,
            )
        if isinstance(value, str) and len(value) > MAX_STRING:
            raise ValidationError(
                self.name,
                f"is {len(value)} characters; at most {MAX_STRING}",
                reason_code="too_long",
                record_id=record_id,
            )
        return value


def _describe_field(field: Mapping[str, Any]) -> ExtraField | str:
    """The ExtraField for an Avro field definition, or why it cannot be one."""
    typ = field.get("type")
    if isinstance(typ, str) and typ in _PRIMITIVES:
        return ExtraField(field["name"], typ, False, dict(field))
    if isinstance(typ, list) and len(typ) == 2 and "null" in typ:
        other = typ[1] if typ[0] == "null" else typ[0]
        if isinstance(other, str) and other in _PRIMITIVES:
            if typ[0] != "null" or "default" not in field or field["default"] is not None:
                return "is a union with null but not optional (null first, default null)"
            return ExtraField(field["name"], other, True, dict(field))
    return f"has type {typ!r}; only primitives ({', '.join(_PRIMITIVES)}), optional or not, can be added"


def extra_fields(schema: Mapping[str, Any], kind: str, *, carried_only: bool = True) -> dict[str, ExtraField]:
    """The fields of `schema` (a record schema as JSON, of the same record type) beyond the bundled v2 schema of
    `kind`, in order; none for another record type.

    With `carried_only` (the writer), each must be optional: a required new field cannot be added to a table
    that already has rows. Raises ValidationError (reason `schema_evolution`) naming the first that cannot be.
    """
    bundled = schema_fields(kind)
    found: dict[str, ExtraField] = {}
    if not isinstance(schema, Mapping) or str(schema.get("name", "")).split(".")[-1] != load_schema(kind)["name"]:
        return found  # another record type altogether: nothing evolved, it simply does not resolve
    for field in schema.get("fields", []):
        name = field.get("name") if isinstance(field, Mapping) else None
        if not isinstance(name, str) or name in bundled:
            continue
        described = _describe_field(field) if name not in _RESERVED else "is a column name the writer reserves"
        if isinstance(described, ExtraField) and carried_only and not described.optional:
            described = "is required: a column added to a table with rows must be optional (default null)"
        if isinstance(described, str):
            raise ValidationError(
                name,
                f"{described} (a field the {kind} v2 schema does not have)",
                reason_code="schema_evolution",
                remedy="add new fields as optional primitives: a union with null, default null",
            )
        found[name] = described
    return found


def reader_schema(kind: str, extras: Mapping[str, ExtraField]) -> Any:
    """The bundled schema plus `extras`, parsed for fastavro: reads the v2 part as before, and the extras."""
    schema = load_schema(kind)
    schema["fields"] = [*schema["fields"], *(copy.deepcopy(f.definition) for f in extras.values())]
    return fastavro.parse_schema(schema)


def validator(kind: str, schema: Mapping[str, Any]) -> Callable[..., dict[str, Any]]:
    """validate(record, policy=...) for records of `schema` (a newer schema of `kind`): the v2 fields as
    `validate_trade`/`validate_quote` check them, each extra field by its type (required ones must be there)."""
    base = _VALIDATORS[kind]
    extras = extra_fields(schema, kind, carried_only=False)
    id_field = f"{kind}_id"

    def validate(record: Mapping[str, Any], *, policy: ValidationPolicy = DEFAULT_POLICY) -> dict[str, Any]:
        if not isinstance(record, Mapping) or not extras:
            return base(record, policy=policy)
        out = base({k: v for k, v in record.items() if k not in extras}, policy=policy)
        for name, field in extras.items():
            out[name] = field.check(record.get(name), out.get(id_field))
        return out

    return validate


class TableColumns:
    """Per writer: the extra columns each Iceberg table has been given, so the catalog is changed (or asked)
    once per table and field, not per record."""

    def __init__(self, attempts: int = 5) -> None:
        self.attempts = attempts
        self._known: dict[Any, dict[str, ExtraField]] = {}

    def ensure(self, key: Any, extras: Mapping[str, ExtraField], get_table: Callable[[Any], Any]) -> None:
        """Make the table of `key` hold every field of `extras` as an optional column.

        ValidationError (`schema_conflict`) when the table has a column of that name with another type: the
        record cannot be written there. Catalog or storage failures propagate (the writer retries later).
        """
        known = self._known.setdefault(key, {})
        todo = {n: f for n, f in extras.items() if known.get(n) != f}
        if not todo:
            return
        for attempt in range(self.attempts):
            table = get_table(key)
            missing = []
            for name, field in todo.items():
                column = next((c for c in table.schema().fields if c.name == name), None)
                if column is None:
                    missing.append(field)
                elif column.field_type != field.iceberg_type:
                    raise ValidationError(
                        name,
                        f"is {field.avro_type} in this record's schema, but table {table.name()} has it as "
                        f"{column.field_type}",
                        reason_code="schema_conflict",
                        remedy="keep a field's type across schema versions; a new name for the new type",
                    )
            if missing:
                try:
                    with table.update_schema() as update:
                        for field in missing:
                            update.add_column(field.name, field.iceberg_type, doc=field.definition.get("doc"))
                except CommitFailedException:
                    log.info("iceberg: %s changed while adding columns; re-reading (attempt %d)", key, attempt + 1)
                    continue
                log.info("iceberg: table %s evolved: added %s", table.name(), ", ".join(f.name for f in missing))
            known.update(todo)
            return
        raise CommitFailedException(f"table {key} kept changing while adding columns ({self.attempts} attempts)")
