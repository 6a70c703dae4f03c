"""The writer as a group of processes on the embedded stack: kill and restart members by pid and start time,
fault them through a chaos session (also from another process), exactly once into Iceberg, and no member
outliving the process that started it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.platform.pipeline_helpers import (
    SYMBOLS,
    fresh_config,
    make_trade,
    running_stack,
    table_rows,
    wait_until,
)

from k2.chaos.faults import service_failure
from k2.chaos.targets.process import is_alive
from k2.platform.config import PlatformConfig
from k2.platform.producer import MarketDataProducer
from k2.scenarios.writer_group import WriterGroup
from k2.stack import LocalStack
from k2.testing import chaos_session

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack() as running:
        yield running


@pytest.fixture
def group(stack: LocalStack, tmp_path: Path) -> Iterator[WriterGroup]:
    made = WriterGroup(fresh_config(stack), "wg", root=tmp_path / "group", session_timeout_ms=3000)
    yield made
    made.close()


def produce(config: PlatformConfig, start: int, count: int) -> list[str]:
    trades = [make_trade(start + i, list(SYMBOLS)[i % len(SYMBOLS)]) for i in range(count)]
    with MarketDataProducer(config) as producer:
        for trade in trades:
            producer.produce_trade(trade)
        assert producer.flush(30) == 0
    return [t["trade_id"] for t in trades]


def iceberg_ids(config: PlatformConfig) -> list[str]:
    return [i for ac in ("crypto", "equities") for i in table_rows(config, "trade", ac).column("trade_id").to_pylist()]


def test_members_are_killed_and_restarted_by_name_and_write_exactly_once(group: WriterGroup) -> None:
    first, second = group.start(2)
    assert first.name == "writer-1" and first.alive and second.alive and first.pid != second.pid
    produced = produce(group.config, 0, 400)
    killed = group.kill("writer-1")
    assert killed["gone_after_s"] < 5 and not is_alive(first.pid, first.starttime)
    produced += produce(group.config, 400, 400)
    again = group.restart("writer-1")
    assert again.name == "writer-1" and again.pid != first.pid and again.alive
    assert group.restart("writer-1") == again  # a live member is left alone
    wait_until(lambda: len(iceberg_ids(group.config)) >= len(produced), 90, "every trade in Iceberg", interval=0.5)
    assert sorted(iceberg_ids(group.config)) == sorted(produced)
    ends = {p: o for p, o in group.committed(group.config.topics.trades, [0, 1, 2]).items() if o >= 0}
    assert group.wait_caught_up(group.config.topics.trades, ends, 30) is not None
    assert sum(ends.values()) == len(produced)  # committed up to the end of every partition
    assert group.close() == {"writer-1": "stopped", "writer-2": "stopped"}  # graceful: flush, commit, leave


def test_members_are_chaos_targets_and_a_kill_is_healed_from_another_process(
    group: WriterGroup, stack: LocalStack
) -> None:
    group.start(2)
    with chaos_session(stack, seed=5) as session:
        assert sorted(group.declare(session)) == ["writer-1", "writer-2"]
        with service_failure("writer-2", duration_seconds=1, mode="pause", session=session) as paused:
            assert paused.effect.frozen and paused.effect.freezer_state == "FROZEN"
        assert paused.restore_effect.changed  # thawed
        before = group.member("writer-1")
        with service_failure("writer-1", duration_seconds=0.5, mode="kill", session=session) as killed:
            assert not before.alive
        after = group.member("writer-1")
        assert after.alive and after.pid != before.pid
        assert killed.restore_effect.pid == after.pid  # read back from the group file
        group.undeclare()
        assert "writer-1" not in session.services


def test_members_stop_when_the_process_that_started_them_dies(stack: LocalStack, tmp_path: Path) -> None:
    config = fresh_config(stack)
    script = f"""
import json, sys, time
from k2.platform.config import PlatformConfig
from k2.scenarios.writer_group import WriterGroup
config = PlatformConfig.from_env()
group = WriterGroup(config, "orphans", root={str(tmp_path / "g")!r}, session_timeout_ms=3000)
print(json.dumps([[m.pid, m.starttime] for m in group.start(2)]), flush=True)
time.sleep(600)
"""
    owner = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, **config.as_env()},
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert owner.stdout is not None
        members = json.loads(owner.stdout.readline())
        assert len(members) == 2 and all(is_alive(pid, start) for pid, start in members)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
    deadline = time.monotonic() + 30
    while any(is_alive(pid, start) for pid, start in members) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(is_alive(pid, start) for pid, start in members), "a writer outlived its owner"
    logs = (tmp_path / "g").glob("writer-*.log")
    assert all("iceberg-writer: stopped" in log.read_text() for log in logs)  # a graceful stop, not a kill
