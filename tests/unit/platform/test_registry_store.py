"""Durable store: replay, torn tail, corruption, write failures and the one-process-per-dir lock."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from k2.platform.errors import RegistryStorageError
from k2.platform.registry.service import SchemaRegistry
from k2.platform.registry.store import LOG_NAME, Store

SCHEMA = json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]})
SCHEMA_B = json.dumps(
    {
        "type": "record",
        "name": "R",
        "fields": [{"name": "a", "type": "int"}, {"name": "b", "type": "int", "default": 0}],
    }
)


def _snapshot(store: Store) -> dict[str, object]:
    state = store.state
    return {
        "schemas": {i: (r.schema.text, r.guid) for i, r in state.schemas.items()},
        "subjects": {s: {v: (r.schema_id, r.deleted) for v, r in vs.items()} for s, vs in state.subjects.items()},
        "configs": dict(state.configs),
        "global": state.global_level,
        "next_id": state.next_id,
    }


def _populate(store: Store) -> None:
    reg = SchemaRegistry(store)
    reg.register("a-value", {"schema": SCHEMA})
    reg.register("a-value", {"schema": SCHEMA_B})
    reg.register("b-value", {"schema": SCHEMA})
    reg.set_config("a-value", {"compatibility": "FULL"})
    reg.set_config(None, {"compatibility": "NONE"})
    reg.delete_version("b-value", "1")


def test_replay_restores_everything(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _populate(store)
    before = _snapshot(store)
    store.close()
    again = Store(tmp_path)
    assert _snapshot(again) == before
    again.close()


def test_torn_last_line_is_discarded(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _populate(store)
    before = _snapshot(store)
    store.close()
    with open(tmp_path / LOG_NAME, "ab") as log:
        log.write(b'{"ops":[{"op":"version","subj')
    again = Store(tmp_path)
    assert _snapshot(again) == before
    SchemaRegistry(again).register("c-value", {"schema": SCHEMA})  # the log is well-formed again
    again.close()
    third = Store(tmp_path)
    assert "c-value" in third.state.subjects
    third.close()


def test_corrupt_middle_line_refuses_to_start(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _populate(store)
    store.close()
    lines = (tmp_path / LOG_NAME).read_bytes().splitlines(keepends=True)
    lines[1] = b"garbage\n"
    (tmp_path / LOG_NAME).write_bytes(b"".join(lines))
    with pytest.raises(RegistryStorageError) as info:
        Store(tmp_path)
    assert "corrupt at line 2" in str(info.value) and "lines 1-1 are intact" in str(info.value)


def test_second_store_on_same_dir_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(RegistryStorageError) as info:
        Store(tmp_path)
    assert f"pid {os.getpid()}" in str(info.value)
    store.close()
    Store(tmp_path).close()  # released on close


def test_failed_write_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path)
    _populate(store)
    before = _snapshot(store)
    size = (tmp_path / LOG_NAME).stat().st_size
    real_write = os.write

    def half_then_full_disk(fd: int, data: bytes) -> int:
        monkeypatch.setattr(os, "write", failing)
        return real_write(fd, bytes(data)[:10])

    def failing(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full_disk)
    reg = SchemaRegistry(store)
    with pytest.raises(RegistryStorageError) as info:
        reg.register("d-value", {"schema": SCHEMA})
    assert info.value.error_code == 50001 and "No space left" in str(info.value)
    assert _snapshot(store) == before
    assert (tmp_path / LOG_NAME).stat().st_size == size  # the partial line was cut off
    monkeypatch.setattr(os, "write", real_write)
    reg.register("d-value", {"schema": SCHEMA})  # disk freed: works again
    store.close()
    again = Store(tmp_path)
    assert "d-value" in again.state.subjects
    again.close()


def test_unrecoverable_write_poisons_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path)

    def failing(*args: object) -> int:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "write", failing)
    monkeypatch.setattr(os, "ftruncate", failing)
    reg = SchemaRegistry(store)
    with pytest.raises(RegistryStorageError):
        reg.register("e-value", {"schema": SCHEMA})
    monkeypatch.undo()
    with pytest.raises(RegistryStorageError) as info:
        reg.register("e-value", {"schema": SCHEMA})
    assert "restart the registry" in str(info.value)
    store.close()
