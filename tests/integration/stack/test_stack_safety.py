"""The running stack as a shared machine sees it: made in a `mktemp -d` dir as root, its files private,
its catalog role no superuser, and a `down` during an `up` leaving nothing behind."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import psycopg
import pytest

from k2.stack import LocalStack
from k2.stack import state as statefile
from tests.integration.stack.helpers import processes_under

pytestmark = pytest.mark.integration


def test_private_files_and_an_unprivileged_catalog_role(stack_dir: Path) -> None:
    with LocalStack(stack_dir) as stack:  # stack_dir's parent is a fresh mkdtemp: 0700, root's when root
        parent_mode = stat.S_IMODE(stack_dir.parent.stat().st_mode)
        assert parent_mode & 0o007 == 0 and parent_mode & 0o070 in (0, 0o010)  # at most the ACL mask's x
        assert stat.S_IMODE(stack_dir.stat().st_mode) & 0o077 in (0, 0o010)
        for log in (stack_dir / "logs").iterdir():
            assert stat.S_IMODE(log.stat().st_mode) == 0o600, log
        for name in ("kafka-store", "s3", "schema-registry", "postgres"):
            assert stat.S_IMODE((stack_dir / name).stat().st_mode) == 0o700, name
        with psycopg.connect(stack.endpoints().postgres_uri, connect_timeout=5) as conn:
            row = conn.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user")
            assert row.fetchone() == (False, False, False)
            conn.execute("CREATE TABLE catalog_probe (x int)")  # it owns its database: the catalog works
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("COPY catalog_probe FROM PROGRAM 'id'")  # what a superuser could do: a shell


def test_down_during_up_orphans_nothing(stack_dir: Path) -> None:
    starting = LocalStack(stack_dir)
    failure: list[BaseException] = []

    def up() -> None:
        try:
            starting.up()
        except BaseException as exc:  # reported below
            failure.append(exc)

    thread = threading.Thread(target=up)
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the first service has a pid in the state file
        state = statefile.load(stack_dir) if (stack_dir / "stack.json").exists() else None
        if state and any(s.process for s in state.services.values()):
            break
        time.sleep(0.05)
    else:
        pytest.fail("up never started a service")
    LocalStack(stack_dir).down()  # waits for up's lock, then stops what it started
    thread.join(120)
    assert not thread.is_alive() and not failure
    state = statefile.load(stack_dir)
    assert state is not None and not any(s.process for s in state.services.values())
    assert processes_under(stack_dir) == []
    assert os.path.ismount(stack_dir / "kafka-store" / "data") is False
