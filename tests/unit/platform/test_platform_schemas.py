"""Bundled v2 schemas: they load, parse, agree with the Python enums, and evolve compatibly."""

from __future__ import annotations

import json

import pytest

from k2.platform.errors import SchemaError
from k2.platform.registry import CompatibilityLevel, check_compatibility, parse_avro
from k2.platform.routing import AssetClass
from k2.platform.schemas import (
    NAMESPACE,
    available_schemas,
    load_schema,
    load_schema_str,
    parsed_schema,
    schema_fields,
)
from k2.platform.validation import Side


def test_bundled_schemas() -> None:
    assert available_schemas() == [("quote", 2), ("trade", 2), ("trade", 3)]
    for name, version in available_schemas():
        schema = load_schema(name, version)
        assert schema["namespace"] == NAMESPACE
        assert parsed_schema(name, version)["name"] == f"{NAMESPACE}.{name.title()}"
        assert json.loads(load_schema_str(name, version)) == schema


def test_enums_match_python() -> None:
    trade = schema_fields("trade")
    quote = schema_fields("quote")
    assert trade["asset_class"]["type"] == quote["asset_class"]["type"]
    assert trade["asset_class"]["type"]["symbols"] == [a.value for a in AssetClass]
    assert trade["side"]["type"]["symbols"] == [s.value for s in Side]


@pytest.mark.parametrize("name", ["trade", "quote"])
def test_decimals_are_18_8(name: str) -> None:
    decimals = [
        f
        for f in load_schema(name)["fields"]
        if isinstance(f["type"], dict) and f["type"].get("logicalType") == "decimal"
    ]
    assert len(decimals) >= 2
    assert all((f["type"]["precision"], f["type"]["scale"], f["type"]["type"]) == (18, 8, "bytes") for f in decimals)


def test_load_schema_returns_a_copy() -> None:
    load_schema("trade")["fields"].clear()
    assert schema_fields("trade")


def test_unknown_schema_names_the_known_ones() -> None:
    with pytest.raises(SchemaError) as info:
        load_schema_str("order")
    assert "order_v2.avsc" in str(info.value) and "trade v2" in str(info.value)


def test_adding_an_optional_field_is_fully_compatible() -> None:
    v2 = parse_avro(load_schema_str("trade"))
    evolved = load_schema("trade")
    evolved["fields"].append({"name": "venue_trade_flags", "type": ["null", "string"], "default": None})
    assert check_compatibility(parse_avro(json.dumps(evolved)), [(1, v2)], CompatibilityLevel.FULL_TRANSITIVE) == []


def test_dropping_a_required_field_is_not_forward_compatible() -> None:
    v2 = parse_avro(load_schema_str("trade"))
    evolved = load_schema("trade")
    evolved["fields"] = [f for f in evolved["fields"] if f["name"] != "side"]
    new = parse_avro(json.dumps(evolved))
    assert check_compatibility(new, [(1, v2)], CompatibilityLevel.BACKWARD) == []
    # v2 readers need 'side' and the field has no default (the enum default is for unknown symbols)
    assert check_compatibility(new, [(1, v2)], CompatibilityLevel.FORWARD)
