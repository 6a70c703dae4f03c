"""Compatibility checker: each resolution rule, each level, transitive vs not (table-driven)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k2.platform.errors import InvalidCompatibilityLevel
from k2.platform.registry.compat import CompatibilityLevel, check_compatibility, check_pair
from k2.platform.registry.schema import AvroSchema, parse_avro

L = CompatibilityLevel


def s(obj: Any) -> AvroSchema:
    return parse_avro(json.dumps(obj))


def rec(*fields: dict[str, Any], name: str = "R", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def f(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def dec(precision: int, scale: int) -> dict[str, Any]:
    return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}


def enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "E", "symbols": list(symbols), **extra}


# (id, writer, reader, expected incompatibility kinds; [] = reader can read writer's data)
PAIRS: list[tuple[str, Any, Any, list[str]]] = [
    ("same primitive", "string", "string", []),
    ("int->long", "int", "long", []),
    ("int->float", "int", "float", []),
    ("int->double", "int", "double", []),
    ("long->float", "long", "float", []),
    ("long->double", "long", "double", []),
    ("float->double", "float", "double", []),
    ("long-/->int", "long", "int", ["TYPE_MISMATCH"]),
    ("double-/->float", "double", "float", ["TYPE_MISMATCH"]),
    ("string->bytes", "string", "bytes", []),
    ("bytes->string", "bytes", "string", []),
    ("boolean-/->int", "boolean", "int", ["TYPE_MISMATCH"]),
    ("null-/->string", "null", "string", ["TYPE_MISMATCH"]),
    ("record vs array", rec(f("a", "int")), {"type": "array", "items": "int"}, ["TYPE_MISMATCH"]),
    ("reader adds field with default", rec(f("a", "int")), rec(f("a", "int"), f("b", "int", default=0)), []),
    (
        "reader adds field without default",
        rec(f("a", "int")),
        rec(f("a", "int"), f("b", "int")),
        ["READER_FIELD_MISSING_DEFAULT_VALUE"],
    ),
    ("reader drops a field", rec(f("a", "int"), f("b", "int")), rec(f("a", "int")), []),
    ("field renamed with alias", rec(f("a", "int")), rec(f("b", "int", aliases=["a"])), []),
    ("field renamed without alias", rec(f("a", "int")), rec(f("b", "int")), ["READER_FIELD_MISSING_DEFAULT_VALUE"]),
    ("field type promoted", rec(f("a", "int")), rec(f("a", "long")), []),
    ("field type narrowed", rec(f("a", "long")), rec(f("a", "int")), ["TYPE_MISMATCH"]),
    ("record renamed", rec(f("a", "int"), name="A"), rec(f("a", "int"), name="B"), ["NAME_MISMATCH"]),
    ("record renamed with alias", rec(f("a", "int"), name="A"), rec(f("a", "int"), name="B", aliases=["A"]), []),
    (
        "namespace changed, same short name",
        rec(f("a", "int"), namespace="x.y"),
        rec(f("a", "int"), namespace="z"),
        [],
    ),
    ("enum symbol added by reader", enum("A", "B"), enum("A", "B", "C"), []),
    ("enum symbol removed by reader", enum("A", "B", "C"), enum("A", "B"), ["MISSING_ENUM_SYMBOLS"]),
    ("enum symbol removed, reader default", enum("A", "B", "C"), enum("A", "B", default="A"), []),
    ("enum renamed", enum("A"), {**enum("A"), "name": "F"}, ["NAME_MISMATCH"]),
    ("fixed same", {"type": "fixed", "name": "X", "size": 4}, {"type": "fixed", "name": "X", "size": 4}, []),
    (
        "fixed size changed",
        {"type": "fixed", "name": "X", "size": 4},
        {"type": "fixed", "name": "X", "size": 8},
        ["FIXED_SIZE_MISMATCH"],
    ),
    ("array items promoted", {"type": "array", "items": "int"}, {"type": "array", "items": "long"}, []),
    (
        "array items mismatch",
        {"type": "array", "items": "string"},
        {"type": "array", "items": "int"},
        ["TYPE_MISMATCH"],
    ),
    ("map values promoted", {"type": "map", "values": "float"}, {"type": "map", "values": "double"}, []),
    ("map values mismatch", {"type": "map", "values": "long"}, {"type": "map", "values": "int"}, ["TYPE_MISMATCH"]),
    ("writer into reader union", "int", ["null", "int"], []),
    ("writer promoted into reader union", "int", ["null", "long"], []),
    ("writer missing from reader union", "string", ["null", "int"], ["MISSING_UNION_BRANCH"]),
    ("union to union", ["null", "int"], ["null", "long", "string"], []),
    ("union branch dropped", ["null", "string"], ["null", "int"], ["MISSING_UNION_BRANCH"]),
    ("writer union into non-union", ["null", "int"], "int", ["TYPE_MISMATCH"]),
    ("field made nullable", rec(f("a", "int")), rec(f("a", ["null", "int"], default=None)), []),
    ("field made non-nullable", rec(f("a", ["null", "int"], default=None)), rec(f("a", "int")), ["TYPE_MISMATCH"]),
    (
        "nested record field narrowed",
        rec(f("inner", rec(f("x", "long"), name="In"))),
        rec(f("inner", rec(f("x", "int"), name="In"))),
        ["TYPE_MISMATCH"],
    ),
    (
        "nested record field added with default",
        rec(f("inner", rec(f("x", "long"), name="In"))),
        rec(f("inner", rec(f("x", "long"), f("y", "string", default=""), name="In"))),
        [],
    ),
    (
        "named type referenced twice",
        rec(f("a", enum("A", "B")), f("b", "E")),
        rec(f("a", enum("A", "B", "C")), f("b", "E")),
        [],
    ),
    (
        "named reference narrowed",
        rec(f("a", enum("A", "B")), f("b", "E")),
        rec(f("a", enum("A")), f("b", "E")),
        ["MISSING_ENUM_SYMBOLS", "MISSING_ENUM_SYMBOLS"],
    ),
    (
        "recursive record",
        rec(f("v", "int"), f("next", ["null", "R"], default=None)),
        rec(f("v", "long"), f("next", ["null", "R"], default=None)),
        [],
    ),
    ("decimal unchanged", dec(18, 8), dec(18, 8), []),
    ("decimal scale changed", dec(18, 8), dec(18, 4), ["LOGICAL_TYPE_MISMATCH"]),
    ("decimal precision widened", dec(18, 8), dec(20, 8), []),
    ("decimal precision narrowed", dec(18, 8), dec(12, 8), ["LOGICAL_TYPE_MISMATCH"]),
    ("bytes read as decimal", "bytes", dec(18, 8), []),
    (
        "timestamp unit changed",
        {"type": "long", "logicalType": "timestamp-millis"},
        {"type": "long", "logicalType": "timestamp-micros"},
        ["LOGICAL_TYPE_MISMATCH"],
    ),
]


@pytest.mark.parametrize(("writer", "reader", "expected"), [p[1:] for p in PAIRS], ids=[p[0] for p in PAIRS])
def test_resolution_rules(writer: Any, reader: Any, expected: list[str]) -> None:
    assert [p.kind for p in check_pair(s(reader), s(writer))] == expected


def test_incompatibility_names_the_path_and_field() -> None:
    [problem] = check_pair(s(rec(f("a", "int"), f("b", "int"))), s(rec(f("a", "int"))))
    assert problem.path == "/fields/1"
    assert problem.info == "b"
    assert "'b'" in problem.describe("new", "old") and "new schema" in problem.describe("new", "old")


V1 = rec(f("a", "int"), f("b", "string"))
# (id, old, new, {level: compatible?}) for the levels that differ from NONE (always compatible)
EVOLUTIONS: list[tuple[str, Any, Any, dict[L, bool]]] = [
    (
        "add field with default",
        V1,
        rec(f("a", "int"), f("b", "string"), f("c", "int", default=1)),
        {L.BACKWARD: True, L.FORWARD: True, L.FULL: True},
    ),
    (
        "add field without default",
        V1,
        rec(f("a", "int"), f("b", "string"), f("c", "int")),
        {L.BACKWARD: False, L.FORWARD: True, L.FULL: False},
    ),
    ("remove field without default", V1, rec(f("a", "int")), {L.BACKWARD: True, L.FORWARD: False, L.FULL: False}),
    (
        "remove field with default",
        rec(f("a", "int"), f("b", "string", default="")),
        rec(f("a", "int")),
        {L.BACKWARD: True, L.FORWARD: True, L.FULL: True},
    ),
    (
        "widen int to long",
        V1,
        rec(f("a", "long"), f("b", "string")),
        {L.BACKWARD: True, L.FORWARD: False, L.FULL: False},
    ),
    ("change type", V1, rec(f("a", "boolean"), f("b", "string")), {L.BACKWARD: False, L.FORWARD: False, L.FULL: False}),
]


@pytest.mark.parametrize(("old", "new", "expected"), [e[1:] for e in EVOLUTIONS], ids=[e[0] for e in EVOLUTIONS])
def test_levels_against_one_version(old: Any, new: Any, expected: dict[L, bool]) -> None:
    for level in L:
        base = L(level.value.removesuffix("_TRANSITIVE"))
        want = True if base is L.NONE else expected[base]
        got = not check_compatibility(s(new), [(1, s(old))], level)
        assert got == want, f"{level}: expected compatible={want}"


# (id, history oldest->newest, new, {level: compatible?}): non-transitive checks the latest only
TRANSITIVE: list[tuple[str, list[Any], Any, dict[L, bool]]] = [
    (
        "required field whose default appeared only in v2",
        [rec(f("a", "int")), rec(f("a", "int"), f("b", "int", default=0))],
        rec(f("a", "int"), f("b", "int")),
        {L.BACKWARD: True, L.BACKWARD_TRANSITIVE: False, L.FULL: True, L.FULL_TRANSITIVE: False},
    ),
    (
        "field removed whose default appeared only in v2",
        [rec(f("a", "int"), f("b", "int")), rec(f("a", "int"), f("b", "int", default=0))],
        rec(f("a", "int")),
        {L.FORWARD: True, L.FORWARD_TRANSITIVE: False, L.FULL: True, L.FULL_TRANSITIVE: False},
    ),
]


@pytest.mark.parametrize(("history", "new", "expected"), [t[1:] for t in TRANSITIVE], ids=[t[0] for t in TRANSITIVE])
def test_transitive_levels_check_every_version(history: list[Any], new: Any, expected: dict[L, bool]) -> None:
    previous = [(i + 1, s(old)) for i, old in enumerate(history)]
    for level, want in expected.items():
        messages = check_compatibility(s(new), previous, level)
        assert (not messages) == want, f"{level}: {messages}"
        if messages:
            assert "{oldSchemaVersion: 1}" in messages
            assert f"{{compatibility: '{level.value}'}}" in messages


def test_no_history_is_always_compatible() -> None:
    assert check_compatibility(s(V1), [], L.FULL_TRANSITIVE) == []


def test_messages_follow_confluents_shape() -> None:
    messages = check_compatibility(s(rec(f("a", "int"), f("c", "int"))), [(3, s(rec(f("a", "int"))))], L.BACKWARD)
    assert messages[0].startswith("{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'c'")
    assert messages[1:] == ["{oldSchemaVersion: 3}", "{compatibility: 'BACKWARD'}"]


@pytest.mark.parametrize("raw", ["backward", "FULL_TRANSITIVE", " none "])
def test_level_parse_is_case_insensitive(raw: str) -> None:
    assert L.parse(raw).value == raw.strip().upper()


@pytest.mark.parametrize("raw", ["SIDEWAYS", "", None, 3])
def test_level_parse_rejects_unknown(raw: Any) -> None:
    with pytest.raises(InvalidCompatibilityLevel) as info:
        L.parse(raw)
    assert info.value.error_code == 42203


def _apache_verdict(reader: Any, writer: Any) -> bool:
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
    from avro.schema import parse

    result = ReaderWriterCompatibilityChecker().get_compatibility(parse(json.dumps(reader)), parse(json.dumps(writer)))
    return result.compatibility is SchemaCompatibilityType.compatible


_NO_LOGICAL = [p for p in PAIRS if "logicalType" not in json.dumps(p[1:3])]


@pytest.mark.parametrize(
    ("writer", "reader", "expected"), [p[1:] for p in _NO_LOGICAL], ids=[p[0] for p in _NO_LOGICAL]
)
def test_agrees_with_apache_avro_without_logical_types(writer: Any, reader: Any, expected: list[str]) -> None:
    """A second opinion: Apache Avro's own Python checker gives the same verdict."""
    assert (not expected) == _apache_verdict(reader, writer)


# -- differential: random schema evolutions, judged by us and by Apache Avro's checker ---------------
_PRIMS = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
_DEFAULTS = {
    "null": None,
    "boolean": False,
    "int": 0,
    "long": 0,
    "float": 0.0,
    "double": 0.0,
    "bytes": "",
    "string": "",
}


class _Gen:
    """Draws random (non-logical) Avro types with unique names, and a valid default for each."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def type_(self, depth: int = 0) -> Any:
        kinds = ["prim", "prim", "nullable", "enum", "array", "map"] + (["record"] if depth < 2 else [])
        kind = self.draw(st.sampled_from(kinds))
        if kind == "prim":
            return self.draw(st.sampled_from(_PRIMS))
        if kind == "nullable":
            return ["null", self.draw(st.sampled_from(_PRIMS[1:]))]
        if kind == "enum":
            symbols = self.draw(st.lists(st.sampled_from("ABCDE"), min_size=1, max_size=4, unique=True))
            return {"type": "enum", "name": self.name("E"), "symbols": symbols}
        if kind == "array":
            return {"type": "array", "items": self.draw(st.sampled_from(_PRIMS[1:]))}
        if kind == "map":
            return {"type": "map", "values": self.draw(st.sampled_from(_PRIMS[1:]))}
        return self.record(depth + 1)

    def record(self, depth: int = 0) -> dict[str, Any]:
        count = self.draw(st.integers(1, 4))
        return rec(*[f(f"f{i}", self.type_(depth)) for i in range(count)], name=self.name("R"))


def _default(type_: Any) -> Any:
    if isinstance(type_, str):
        return _DEFAULTS[type_]
    if isinstance(type_, list):
        return _default(type_[0])
    return {"enum": lambda: type_["symbols"][0], "array": list, "map": dict}.get(
        type_["type"], lambda: {fld["name"]: _default(fld["type"]) for fld in type_["fields"]}
    )()


_PROMOTE = {"int": "long", "long": "double", "float": "double", "string": "bytes", "bytes": "string", "boolean": "int"}


def _mutate(draw: st.DrawFn, gen: _Gen, schema: dict[str, Any]) -> dict[str, Any]:
    new = json.loads(json.dumps(schema))
    fields = new["fields"]
    index = draw(st.integers(0, len(fields) - 1))
    action = draw(
        st.sampled_from(["add_default", "add_required", "remove", "promote", "retype", "rename_alias", "enum"])
    )
    if action in ("add_default", "add_required"):
        type_ = gen.type_(1)
        extra = {"default": _default(type_)} if action == "add_default" else {}
        fields.append(f(gen.name("n"), type_, **extra))
    elif action == "remove" and len(fields) > 1:
        fields.pop(index)
    elif action == "promote" and isinstance(fields[index]["type"], str):
        fields[index]["type"] = _PROMOTE.get(fields[index]["type"], "string")
        fields[index].pop("default", None)
    elif action == "retype":
        fields[index] = f(fields[index]["name"], gen.type_(1))
    elif action == "rename_alias":
        fields[index] = {**fields[index], "name": gen.name("r"), "aliases": [fields[index]["name"]]}
    elif action == "enum":
        for fld in fields:
            if isinstance(fld["type"], dict) and fld["type"]["type"] == "enum":
                symbols = fld["type"]["symbols"]
                added = next(c for c in "ZYXWVU" if c not in symbols)
                fld["type"]["symbols"] = symbols[:-1] if len(symbols) > 1 and draw(st.booleans()) else [*symbols, added]
                break
    return new


@st.composite
def _evolutions(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    gen = _Gen(draw)
    old = gen.record()
    new = old
    for _ in range(draw(st.integers(1, 3))):
        new = _mutate(draw, gen, new)
    return old, new


@settings(max_examples=300, deadline=None)
@given(_evolutions())
def test_random_evolutions_agree_with_apache_avro(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    old, new = pair
    for reader, writer in ((new, old), (old, new)):
        ours = not check_pair(s(reader), s(writer))
        assert ours == _apache_verdict(reader, writer), (reader, writer)
