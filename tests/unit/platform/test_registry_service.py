"""Registry semantics (Confluent's), without HTTP: ids, versions, deletes, configs, errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k2.platform import errors as e
from k2.platform.registry.service import SchemaRegistry
from k2.platform.registry.store import Store


def schema(*fields: tuple[str, Any], **defaults: Any) -> dict[str, Any]:
    out = []
    for name, type_ in fields:
        field: dict[str, Any] = {"name": name, "type": type_}
        if name in defaults:
            field["default"] = defaults[name]
        out.append(field)
    return {"schema": json.dumps({"type": "record", "name": "R", "fields": out})}


V1 = schema(("a", "int"))
V2 = schema(("a", "int"), ("b", "string"), b="x")
BAD = schema(("a", "int"), ("c", "string"))  # new field without default: not BACKWARD


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[SchemaRegistry]:
    store = Store(tmp_path)
    yield SchemaRegistry(store)
    store.close()


def test_register_is_idempotent_and_ids_are_global(reg: SchemaRegistry) -> None:
    first = reg.register("a", V1)["id"]
    assert reg.register("a", V1)["id"] == first
    assert reg.versions("a") == [1]
    assert reg.register("b", V1)["id"] == first  # same schema, other subject: same id
    assert reg.register("a", V2)["id"] == first + 1
    assert reg.versions("a") == [1, 2]
    assert reg.version("a", "latest")["version"] == 2
    assert reg.version("a", "-1")["id"] == first + 1


def test_whitespace_does_not_make_a_new_schema(reg: SchemaRegistry) -> None:
    spaced = {"schema": json.dumps(json.loads(V1["schema"]), indent=4)}
    assert reg.register("a", V1)["id"] == reg.register("a", spaced)["id"]
    assert reg.lookup("a", spaced)["version"] == 1


def test_normalize_collapses_key_order(reg: SchemaRegistry) -> None:
    reordered = {"schema": '{"fields": [{"type": {"type": "int"}, "name": "a"}], "name": "R", "type": "record"}'}
    one = reg.register("a", V1, normalize=True)["id"]
    assert reg.register("a", reordered, normalize=True)["id"] == one
    assert reg.versions("a") == [1]


def test_incompatible_schema_is_refused_with_409(reg: SchemaRegistry) -> None:
    reg.register("a", V1)
    with pytest.raises(e.IncompatibleSchema) as info:
        reg.register("a", BAD)
    assert info.value.http_status == 409 and info.value.error_code == 409
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in info.value.detail
    assert reg.versions("a") == [1]


def test_config_levels(reg: SchemaRegistry) -> None:
    assert reg.get_config() == {"compatibilityLevel": "BACKWARD"}
    with pytest.raises(e.SubjectConfigNotFound):
        reg.get_config("a")
    assert reg.get_config("a", default_to_global=True) == {"compatibilityLevel": "BACKWARD"}
    assert reg.set_config("a", {"compatibility": "none"}) == {"compatibility": "NONE"}
    reg.register("a", V1)
    reg.register("a", BAD)  # allowed under NONE
    with pytest.raises(e.InvalidCompatibilityLevel):
        reg.set_config("a", {"compatibility": "LOOSE"})
    assert reg.delete_config("a") == {"compatibilityLevel": "NONE"}
    assert reg.set_config(None, {"compatibilityLevel": "FULL"}) == {"compatibility": "FULL"}
    assert reg.get_config("a", default_to_global=True) == {"compatibilityLevel": "FULL"}
    assert reg.delete_config() == {"compatibilityLevel": "FULL"}
    assert reg.get_config() == {"compatibilityLevel": "BACKWARD"}


def test_soft_then_permanent_delete_of_a_version(reg: SchemaRegistry) -> None:
    one = reg.register("a", V1)["id"]
    reg.register("a", V2)
    with pytest.raises(e.VersionNotSoftDeleted):
        reg.delete_version("a", "1", permanent=True)
    assert reg.delete_version("a", "1") == 1
    with pytest.raises(e.VersionSoftDeleted):
        reg.delete_version("a", "1")
    assert reg.versions("a") == [2]
    assert reg.versions("a", deleted=True) == [1, 2]
    assert reg.versions("a", deleted_only=True) == [1]
    with pytest.raises(e.VersionNotFound):
        reg.version("a", "1")
    assert reg.version("a", "1", deleted=True)["id"] == one
    assert reg.schema_by_id(one)["schema"] == V1["schema"]  # soft-deleted schemas stay readable by id
    assert reg.delete_version("a", "1", permanent=True) == 1
    with pytest.raises(e.SchemaNotFound):
        reg.schema_by_id(one)
    assert reg.versions("a", deleted=True) == [2]


def test_subject_delete_lifecycle(reg: SchemaRegistry) -> None:
    reg.register("a", V1)
    reg.register("a", V2)
    reg.set_config("a", {"compatibility": "FULL"})
    with pytest.raises(e.SubjectNotSoftDeleted):
        reg.delete_subject("a", permanent=True)
    assert reg.delete_subject("a") == [1, 2]
    with pytest.raises(e.SubjectSoftDeleted):
        reg.delete_subject("a")
    assert reg.subjects() == []
    assert reg.subjects(deleted=True) == ["a"]
    assert reg.subjects(deleted_only=True) == ["a"]
    with pytest.raises(e.SubjectNotFound):
        reg.versions("a")
    assert reg.register("a", V1)["id"] == 1  # revived: same id, next version number
    assert reg.versions("a") == [3]
    reg.delete_subject("a")
    assert reg.delete_subject("a", permanent=True) == [1, 2, 3]
    assert reg.subjects(deleted=True) == []
    with pytest.raises(e.SubjectConfigNotFound):
        reg.get_config("a")
    assert reg.register("a", V2)["id"] == 2  # ids never change, versions restart
    assert reg.versions("a") == [1]


def test_lookup(reg: SchemaRegistry) -> None:
    with pytest.raises(e.SubjectNotFound):
        reg.lookup("a", V1)
    reg.register("a", V1)
    found = reg.lookup("a", V1)
    assert (found["subject"], found["version"], found["id"]) == ("a", 1, 1)
    with pytest.raises(e.SchemaNotFound):
        reg.lookup("a", V2)


@pytest.mark.parametrize("version", ["0", "abc", "2147483648", "-2", "1.5"])
def test_invalid_versions(reg: SchemaRegistry, version: str) -> None:
    reg.register("a", V1)
    with pytest.raises(e.InvalidVersion):
        reg.version("a", version)


@pytest.mark.parametrize(
    "body",
    [
        {"schema": "{not json"},
        {"schema": '{"type": "record", "name": "R"}'},
        {"schema": '{"type": "nonsense"}'},
        {"schema": '["int", "int"]'},
        {"schema": '{"type":"record","name":"R","fields":[{"name":"a","type":["null","int"],"default":1}]}'},
        {"schema": V1["schema"], "schemaType": "PROTOBUF"},
        {"schema": V1["schema"], "references": [{"name": "x", "subject": "y", "version": 1}]},
        {},
        ["not", "an", "object"],
    ],
)
def test_invalid_schemas_are_42201(reg: SchemaRegistry, body: Any) -> None:
    with pytest.raises(e.InvalidSchema) as info:
        reg.register("a", body)
    assert info.value.error_code == 42201


def test_compatibility_endpoint_semantics(reg: SchemaRegistry) -> None:
    assert reg.test_compatibility("none-yet", "latest", V1) == {"is_compatible": True}
    with pytest.raises(e.SubjectNotFound):
        reg.test_compatibility("none-yet", "1", V1)
    reg.register("a", schema(("a", "int"), ("b", "int"), b=0))
    reg.register("a", schema(("a", "int"), ("b", "int")))
    required_b = schema(("a", "int"), ("b", "int"), ("c", "int"), c=1)
    assert reg.test_compatibility("a", "latest", required_b)["is_compatible"]
    reg.set_config("a", {"compatibility": "BACKWARD_TRANSITIVE"})
    verdict = reg.test_compatibility("a", None, BAD, verbose=True)
    assert verdict["is_compatible"] is False and "{oldSchemaVersion: 2}" in verdict["messages"]
    # against one named version the transitive level acts like its plain direction
    assert reg.test_compatibility("a", "2", required_b, verbose=True) == {"is_compatible": True, "messages": []}


def test_ids_and_subjects_by_id(reg: SchemaRegistry) -> None:
    one = reg.register("a", V1)["id"]
    reg.register("b", V1)
    assert reg.subjects_for_id(one) == ["a", "b"]
    assert reg.versions_for_id(one) == [{"subject": "a", "version": 1}, {"subject": "b", "version": 1}]
    guid = reg.schema_by_id(one)["guid"]
    assert reg.schema_by_guid(guid)["id"] == one
    with pytest.raises(e.SchemaNotFound):
        reg.schema_by_id(99)
    with pytest.raises(e.SchemaNotFound):
        reg.schema_by_id("x")


def test_concurrent_registrations_are_serialised(reg: SchemaRegistry) -> None:
    bodies = [
        schema(("a", "int"), *[(f"f{j}", "int") for j in range(i)], **{f"f{j}": 0 for j in range(i)}) for i in range(8)
    ]
    results: dict[tuple[str, int], int] = {}
    barrier = threading.Barrier(16)

    def worker(n: int) -> None:
        barrier.wait(timeout=10)
        for i, body in enumerate(bodies):
            results[(f"s{n % 4}", i)] = reg.register(f"s{n % 4}", body)["id"]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    ids = {i: {sid for (subject, j), sid in results.items() if j == i} for i in range(8)}
    assert all(len(found) == 1 for found in ids.values()), ids  # one id per schema, whatever the subject
    assert sorted(next(iter(v)) for v in ids.values()) == list(range(1, 9))
    for n in range(4):
        assert reg.versions(f"s{n}") == list(range(1, 9))
