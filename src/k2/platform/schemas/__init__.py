"""The platform's Avro schemas, shipped as .avsc files inside this package.

The .avsc files are the single source of truth: producers register them with the schema registry,
validation checks records against their field set, and tests round-trip records through them.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from importlib import resources
from typing import Any

import fastavro

from k2.platform.errors import SchemaError

__all__ = [
    "NAMESPACE",
    "available_schemas",
    "load_schema",
    "load_schema_str",
    "parsed_schema",
    "schema_fields",
]

NAMESPACE = "com.k2.marketdata"
_FILE = re.compile(r"^(?P<name>[a-z_]+)_v(?P<version>\d+)\.avsc$")


def available_schemas() -> list[tuple[str, int]]:
    """(name, version) of every bundled schema, e.g. [('quote', 2), ('trade', 2)]."""
    found = []
    for entry in resources.files(__name__).iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append((match["name"], int(match["version"])))
    return sorted(found)


@cache
def load_schema_str(name: str, version: int = 2) -> str:
    """The schema's JSON text exactly as shipped (what producers register)."""
    filename = f"{name}_v{version}.avsc"
    entry = resources.files(__name__).joinpath(filename)
    if not entry.is_file():
        known = ", ".join(f"{n} v{v}" for n, v in available_schemas()) or "none"
        raise SchemaError(
            f"no bundled schema '{filename}' (known: {known})",
            remedy="ask for one of the known schemas, or add the .avsc file to k2/platform/schemas",
        )
    text = entry.read_text(encoding="utf-8")
    try:
        fastavro.parse_schema(json.loads(text), _write_hint=False)
    except (ValueError, fastavro.schema.SchemaParseException, fastavro.schema.UnknownType) as exc:
        raise SchemaError(f"bundled schema '{filename}' does not parse: {exc}") from exc
    return text


def load_schema(name: str, version: int = 2) -> dict[str, Any]:
    """The schema as a JSON dict; a fresh copy, so callers may modify it (e.g. to evolve it)."""
    return copy.deepcopy(_load_dict(name, version))


@cache
def _load_dict(name: str, version: int) -> dict[str, Any]:
    return json.loads(load_schema_str(name, version))


@cache
def parsed_schema(name: str, version: int = 2) -> dict[str, Any]:
    """The fastavro-parsed schema, cached; pass it to fastavro's readers and writers."""
    return fastavro.parse_schema(load_schema(name, version))


def schema_fields(name: str, version: int = 2) -> dict[str, dict[str, Any]]:
    """Field name -> field definition, in schema order."""
    return {field["name"]: field for field in load_schema(name, version)["fields"]}
