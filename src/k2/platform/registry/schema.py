"""Parsing registered schema text into something the registry can compare and check.

Identity: two registrations are "the same schema" when their JSON is equal after dropping
whitespace (key order kept, like Confluent's canonical string). With normalize=true the text is
first normalized (keys sorted, {"type": "int"} collapsed to "int"), so cosmetic differences
collapse onto one id.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any

import fastavro
from fastavro.schema import SchemaParseException, UnknownType

from k2.httpsafe import JsonError, parse_json
from k2.platform.errors import InvalidSchema

__all__ = ["MAX_SCHEMA_BYTES", "AvroSchema", "canonical_json", "parse_avro"]

MAX_SCHEMA_BYTES = 1 << 20
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class AvroSchema:
    """A validated Avro schema: its text, identity key, fastavro-parsed form and named types."""

    text: str
    canonical: str
    parsed: Any = field(compare=False, repr=False)
    names: dict[str, Any] = field(compare=False, repr=False)


def canonical_json(obj: Any) -> str:
    """Compact JSON with key order kept: the identity of a schema."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _normalize(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_normalize(item) for item in obj]
    if isinstance(obj, dict):
        if set(obj) == {"type"} and isinstance(obj["type"], str) and obj["type"] in _PRIMITIVES:
            return obj["type"]
        return {key: (_normalize(obj[key]) if key != "default" else obj[key]) for key in sorted(obj)}
    return obj


def _invalid(reason: str) -> InvalidSchema:
    return InvalidSchema(f"Invalid schema: {reason}")


def _branch_key(branch: Any) -> Any:
    if isinstance(branch, dict):
        kind = branch.get("type")
        return branch.get("name") if kind in ("record", "error", "enum", "fixed") else _branch_key(kind)
    return branch if isinstance(branch, str) else json.dumps(branch)


def _extra_checks(obj: Any, path: str = "") -> None:
    """Rules the Avro spec has and fastavro does not enforce; Confluent (Java Avro) rejects these."""
    if isinstance(obj, list):
        keys = [_branch_key(branch) for branch in obj]
        if len(set(keys)) != len(keys):
            raise _invalid(f"union at '{path or '/'}' has duplicate branches {keys}")
        for i, branch in enumerate(obj):
            if isinstance(branch, list):
                raise _invalid(f"union at '{path or '/'}' directly contains another union")
            _extra_checks(branch, f"{path}/{i}")
        return
    if not isinstance(obj, dict):
        return
    kind = obj.get("type")
    if isinstance(kind, dict | list):
        _extra_checks(kind, f"{path}/type")
    if kind in ("record", "error", "enum", "fixed"):
        name = obj.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise _invalid(f"{kind} at '{path or '/'}' has an invalid name {name!r}")
    if kind == "fixed" and (
        isinstance(obj.get("size"), bool) or not isinstance(obj.get("size"), int) or obj["size"] < 0
    ):
        raise _invalid(f"fixed '{obj.get('name')}' needs a non-negative integer 'size'")
    if kind == "record" or kind == "error":
        fields = obj.get("fields")
        if not isinstance(fields, list):
            raise _invalid(f"record '{obj.get('name')}' at '{path or '/'}' has no 'fields' list")
        seen: set[str] = set()
        for i, fld in enumerate(fields):
            if not isinstance(fld, dict) or "name" not in fld or "type" not in fld:
                raise _invalid(f"field {i} of record '{obj.get('name')}' needs a 'name' and a 'type'")
            if not isinstance(fld["name"], str) or not _NAME.match(fld["name"]) or "." in fld["name"]:
                raise _invalid(f"record '{obj.get('name')}' has a field with invalid name {fld['name']!r}")
            if fld["name"] in seen:
                raise _invalid(f"record '{obj.get('name')}' has two fields named '{fld['name']}'")
            seen.add(fld["name"])
            branches = fld["type"]
            if isinstance(branches, list) and branches and "default" in fld:
                first_is_null = branches[0] == "null" or branches[0] == {"type": "null"}
                if (fld["default"] is None) != first_is_null:
                    raise _invalid(
                        f"default of field '{fld['name']}' must match the first branch of its union "
                        f"({json.dumps(branches[0])})"
                    )
            _extra_checks(fld["type"], f"{path}/fields/{i}/type")
    elif kind == "array":
        _extra_checks(obj.get("items"), f"{path}/items")
    elif kind == "map":
        _extra_checks(obj.get("values"), f"{path}/values")


def parse_avro(text: Any, *, normalize: bool = False) -> AvroSchema:
    """Validate `text` as an Avro schema; InvalidSchema (42201) says what is wrong with it."""
    if not isinstance(text, str) or not text.strip():
        raise _invalid("the request has no 'schema' string")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SCHEMA_BYTES:
        raise _invalid(f"schema is larger than {MAX_SCHEMA_BYTES} bytes")
    try:
        obj = parse_json(text)  # strict: no nesting past 64 levels, no NaN, no lone surrogates
    except JsonError as exc:
        raise _invalid(f"not JSON ({exc})") from None
    _extra_checks(obj)
    names: dict[str, Any] = {}
    try:
        parsed = fastavro.parse_schema(copy.deepcopy(obj), named_schemas=names, _write_hint=False)
    except (SchemaParseException, UnknownType, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise _invalid(f"{type(exc).__name__}: {exc}") from None
    if normalize:
        obj = _normalize(obj)
        text = canonical_json(obj)
    return AvroSchema(text=text, canonical=canonical_json(obj), parsed=parsed, names=names)
