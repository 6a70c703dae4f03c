"""Avro schema compatibility, by the reader/writer resolution rules of the Avro specification.

`check_pair(reader, writer)` answers "can data written with `writer` be decoded by `reader`?" and
lists every reason it cannot (Java Avro's SchemaCompatibility semantics: name matching on
unqualified names or reader aliases, field lookup by name then reader-field aliases, reader
defaults for missing fields, enum defaults, int->long->float->double and string<->bytes
promotions, unions branch by branch, recursion-safe for recursive records).

Beyond Java Avro, logical types are checked where a mismatch silently corrupts values: two decimals
must share the scale and the reader's precision must be >= the writer's (the spec asks for equal
precision; a wider reader is safe, and FULL still forces equality); two different logical types on
the same underlying type (timestamp-millis vs timestamp-micros) are a mismatch. A logical type on
one side only is allowed, as in Java Avro.

`check_compatibility(new, previous, level)` applies a Confluent compatibility level: BACKWARD means
the new schema reads data of the old ones, FORWARD the reverse, FULL both; *_TRANSITIVE checks every
previous version instead of only the latest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from k2.platform.errors import InvalidCompatibilityLevel
from k2.platform.registry.schema import AvroSchema

__all__ = ["CompatibilityLevel", "Incompatibility", "check_compatibility", "check_pair", "is_compatible"]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_COMPLEX = frozenset({"record", "error", "enum", "fixed", "array", "map"})
# reader type -> writer types it can read through promotion
_PROMOTIONS = {
    "long": {"int"},
    "float": {"int", "long"},
    "double": {"int", "long", "float"},
    "string": {"bytes"},
    "bytes": {"string"},
}


class CompatibilityLevel(StrEnum):
    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"

    @classmethod
    def parse(cls, value: Any) -> CompatibilityLevel:
        """Case-insensitive; InvalidCompatibilityLevel (42203) otherwise."""
        if isinstance(value, str):
            try:
                return cls(value.strip().upper())
            except ValueError:
                pass
        raise InvalidCompatibilityLevel(
            "Invalid compatibility level. Valid values are none, backward, forward, full, "
            "backward_transitive, forward_transitive, and full_transitive"
        )

    @property
    def transitive(self) -> bool:
        return self.value.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        return self.value.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        return self.value.startswith(("FORWARD", "FULL"))


@dataclass(frozen=True)
class Incompatibility:
    """One reason a reader cannot decode a writer's data; `path` is a JSON pointer into the reader."""

    kind: str
    path: str
    detail: str
    info: str = ""

    def describe(self, reader: str = "reader", writer: str = "writer") -> str:
        return self.detail.replace("{reader}", reader).replace("{writer}", writer)


def _kind(node: Any) -> str:
    return "union" if isinstance(node, list) else node["type"]


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _describe_type(node: Any) -> str:
    if isinstance(node, list):
        return "union"
    return node.get("name", node["type"]) if node["type"] in ("record", "error", "enum", "fixed") else node["type"]


class _Checker:
    def __init__(self, reader_names: dict[str, Any], writer_names: dict[str, Any]) -> None:
        self._names = (reader_names, writer_names)
        self._in_progress: set[tuple[int, int]] = set()

    def _node(self, schema: Any, side: int) -> Any:
        if isinstance(schema, list):
            return schema
        if isinstance(schema, str):
            return {"type": schema} if schema in _PRIMITIVES else self._names[side][schema]
        kind = schema["type"]
        if isinstance(kind, dict | list):
            return self._node(kind, side)
        if kind in _PRIMITIVES or kind in _COMPLEX:
            return schema
        return self._names[side][kind]

    def check(self, reader: Any, writer: Any, path: str) -> list[Incompatibility]:
        r, w = self._node(reader, 0), self._node(writer, 1)
        rk, wk = _kind(r), _kind(w)
        if wk == "union":
            if rk == "union":
                return self._union_to_union(r, w, path)
            found: list[Incompatibility] = []
            for i, branch in enumerate(w):
                found += self.check(r, branch, f"{path}/{i}" if path else f"/{i}")
            return found
        if rk == "union":
            if any(not self.check(branch, w, path) for branch in r):
                return []
            return [
                Incompatibility(
                    "MISSING_UNION_BRANCH",
                    path or "/",
                    f"The {{reader}} union at '{path or '/'}' has no branch for the {{writer}} type "
                    f"'{_describe_type(w)}'",
                    _describe_type(w),
                )
            ]
        if rk != wk:
            if wk in _PROMOTIONS.get(rk, ()):
                return []
            return [
                Incompatibility(
                    "TYPE_MISMATCH",
                    path or "/",
                    f"The type at '{path or '/'}' is '{rk}' in the {{reader}} schema and '{wk}' in the "
                    f"{{writer}} schema, which does not promote to it",
                    f"reader type: {rk} not compatible with writer type: {wk}",
                )
            ]
        if rk in _PRIMITIVES:
            return self._logical(r, w, path)
        return getattr(self, f"_{'record' if rk == 'error' else rk}")(r, w, path)

    def _union_to_union(self, r: list[Any], w: list[Any], path: str) -> list[Incompatibility]:
        found = []
        for i, branch in enumerate(w):
            if not any(not self.check(rb, branch, path) for rb in r):
                desc = _describe_type(self._node(branch, 1))
                found.append(
                    Incompatibility(
                        "MISSING_UNION_BRANCH",
                        f"{path}/{i}",
                        f"The {{reader}} union at '{path or '/'}' has no branch for the {{writer}} type '{desc}'",
                        desc,
                    )
                )
        return found

    def _names_match(self, r: dict[str, Any], w: dict[str, Any], path: str) -> list[Incompatibility]:
        if _short(r["name"]) == _short(w["name"]):
            return []
        namespace = r["name"].rsplit(".", 1)[0] if "." in r["name"] else ""
        aliases = {a if "." in a or not namespace else f"{namespace}.{a}" for a in r.get("aliases", [])}
        if w["name"] in aliases:
            return []
        return [
            Incompatibility(
                "NAME_MISMATCH",
                f"{path}/name",
                f"The name at '{path}/name' is '{r['name']}' in the {{reader}} schema and '{w['name']}' in "
                f"the {{writer}} schema (no matching alias)",
                f"expected: {w['name']}",
            )
        ]

    def _logical(self, r: dict[str, Any], w: dict[str, Any], path: str) -> list[Incompatibility]:
        rl, wl = r.get("logicalType"), w.get("logicalType")
        if rl == wl == "decimal":
            rs, ws = r.get("scale", 0), w.get("scale", 0)
            rp, wp = r.get("precision", 0), w.get("precision", 0)
            if rs != ws or rp < wp:
                return [
                    Incompatibility(
                        "LOGICAL_TYPE_MISMATCH",
                        path or "/",
                        f"The decimal at '{path or '/'}' is ({rp},{rs}) in the {{reader}} schema and ({wp},{ws}) "
                        f"in the {{writer}} schema; scales must match and the reader's precision must not shrink",
                        f"decimal({rp},{rs}) cannot read decimal({wp},{ws})",
                    )
                ]
        elif rl and wl and rl != wl:
            return [
                Incompatibility(
                    "LOGICAL_TYPE_MISMATCH",
                    path or "/",
                    f"The logical type at '{path or '/'}' is '{rl}' in the {{reader}} schema and '{wl}' in the "
                    f"{{writer}} schema",
                    f"{rl} cannot read {wl}",
                )
            ]
        return []

    def _record(self, r: dict[str, Any], w: dict[str, Any], path: str) -> list[Incompatibility]:
        found = self._names_match(r, w, path)
        if found:
            return found
        key = (id(r), id(w))
        if key in self._in_progress:
            return []  # a recursive reference: assume compatible, the outer check decides
        self._in_progress.add(key)
        try:
            by_name = {f["name"]: f for f in w["fields"]}
            for i, rf in enumerate(r["fields"]):
                wf = by_name.get(rf["name"])
                if wf is None:
                    wf = next((by_name[a] for a in rf.get("aliases", []) if a in by_name), None)
                fpath = f"{path}/fields/{i}"
                if wf is not None:
                    found += self.check(rf["type"], wf["type"], f"{fpath}/type")
                elif "default" not in rf:
                    found.append(
                        Incompatibility(
                            "READER_FIELD_MISSING_DEFAULT_VALUE",
                            fpath,
                            f"The field '{rf['name']}' at path '{fpath}' in the {{reader}} schema has no default "
                            f"value and is missing in the {{writer}} schema",
                            rf["name"],
                        )
                    )
            return found
        finally:
            self._in_progress.discard(key)

    def _enum(self, r: dict[str, Any], w: dict[str, Any], path: str) -> list[Incompatibility]:
        found = self._names_match(r, w, path)
        missing = [s for s in w["symbols"] if s not in r["symbols"]]
        if missing and "default" not in r:
            found.append(
                Incompatibility(
                    "MISSING_ENUM_SYMBOLS",
                    f"{path}/symbols",
                    f"The {{reader}} enum at '{path or '/'}' lacks symbols {missing} of the {{writer}} enum "
                    f"and has no default",
                    ", ".join(missing),
                )
            )
        return found

    def _fixed(self, r: dict[str, Any], w: dict[str, Any], path: str) -> list[Incompatibility]:
        found = self._names_match(r, w, path)
        if r["size"] != w["size"]:
            found.append(
                Incompatibility(
                    "FIXED_SIZE_MISMATCH",
                    f"{path}/size",
                    f"The fixed at '{path or '/'}' has size {r['size']} in the {{reader}} schema and "
                    f"{w['size']} in the {{writer}} schema",
                    f"expected: {w['size']}, found: {r['size']}",
                )
            )
        return found + self._logical(r, w, path)

    def _array(self, r: dict[str, Any], w: dict[str, Any], path: str) -> list[Incompatibility]:
        return self.check(r["items"], w["items"], f"{path}/items")

    def _map(self, r: dict[str, Any], w: dict[str, Any], path: str) -> list[Incompatibility]:
        return self.check(r["values"], w["values"], f"{path}/values")


def check_pair(reader: AvroSchema, writer: AvroSchema) -> list[Incompatibility]:
    """Every reason `reader` cannot decode data written with `writer`; empty when it can."""
    return _Checker(reader.names, writer.names).check(reader.parsed, writer.parsed, "")


def is_compatible(reader: AvroSchema, writer: AvroSchema) -> bool:
    return not check_pair(reader, writer)


def _format(problem: Incompatibility, reader: str, writer: str) -> str:
    return (
        f"{{errorType:'{problem.kind}', description:'{problem.describe(reader, writer)}', "
        f"additionalInfo:'{problem.info}'}}"
    )


def check_compatibility(
    new: AvroSchema, previous: Sequence[tuple[int, AvroSchema]], level: CompatibilityLevel
) -> list[str]:
    """Confluent-style messages for every violation of `level`; empty when `new` may be registered.

    `previous` is (version, schema) from oldest to newest, soft-deleted versions already removed.
    """
    if level is CompatibilityLevel.NONE or not previous:
        return []
    targets = previous if level.transitive else previous[-1:]
    messages: list[str] = []
    for version, old in reversed(targets):
        found: list[str] = []
        if level.backward:
            found += [_format(p, "new", "old") for p in check_pair(new, old)]
        if level.forward:
            found += [_format(p, "old", "new") for p in check_pair(old, new)]
        if found:
            messages += [*found, f"{{oldSchemaVersion: {version}}}", f"{{compatibility: '{level.value}'}}"]
    return messages
