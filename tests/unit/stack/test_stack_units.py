"""Fast checks of the stack's pieces that need no service."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from k2.stack import ConfigError, LocalStack, PortTaken, ServiceFailed, ports, procs
from k2.stack import state as statefile
from k2.stack.state import Address, ServiceState, StackState


def test_picked_ports_are_distinct_free_and_leave_room_for_grpc() -> None:
    chosen = ports.pick(5, grpc_offset=True)
    assert len(set(chosen)) == 5
    assert all(ports.is_free(p) and ports.is_free(p + 10000) for p in chosen)


def test_shards_started_at_once_pick_from_disjoint_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two stacks starting at the same moment would race for one free port between pick and bind."""
    picked = {}
    for share in ("1/2", "2/2"):
        monkeypatch.setenv("K2_PORT_SHARE", share)
        picked[share] = ports.pick(20, grpc_offset=True)
    assert {p % 2 for p in picked["1/2"]} == {0} and {p % 2 for p in picked["2/2"]} == {1}
    monkeypatch.setenv("K2_PORT_SHARE", "3/2")
    with pytest.raises(PortTaken, match="K2_PORT_SHARE='3/2'.*unset it"):
        ports.pick(1)


def test_require_free_names_service_and_remedy() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PortTaken, match=rf"s3: port 127.0.0.1:{port} is already in use.*k2 stack down"):
            ports.require_free("s3", port)


def test_state_round_trips_and_is_private(tmp_path: Path) -> None:
    svc = ServiceState("kafka", Address("127.0.0.1", 1), Address("127.0.0.1", 2), "log", ["tansu"], {"A": "b"}, "/")
    svc.process = procs.ProcessId(os.getpid(), procs.starttime_of(os.getpid()) or 0)
    statefile.save(StackState(str(tmp_path), credentials={"secret": "x"}, services={"kafka": svc}))
    path = statefile.state_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = statefile.load(tmp_path)
    assert loaded is not None and loaded.services["kafka"] == svc
    assert loaded.credentials == {"secret": "x"}


def test_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    statefile.state_path(tmp_path).write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable.*k2 stack up"):
        statefile.load(tmp_path)


def test_pid_reuse_is_detected() -> None:
    me = procs.ProcessId(os.getpid(), procs.starttime_of(os.getpid()) or 0)
    assert procs.is_alive(me)
    assert not procs.is_alive(procs.ProcessId(me.pid, me.starttime + 1))
    assert not procs.signal_process(procs.ProcessId(me.pid, me.starttime + 1), 0)


def test_service_failed_message_carries_log_tail_and_remedy() -> None:
    err = ServiceFailed("kafka", "exited during start", "line one\nline two", "Run `k2 stack logs kafka`.")
    text = str(err)
    assert text.startswith("kafka: exited during start")
    assert "    line two" in text and text.endswith("Run `k2 stack logs kafka`.")


def test_service_failed_message_carries_the_logs_of_what_it_depends_on() -> None:
    """A broker that never gets healthy because its store fails: the store's errors are in the message (the
    stack of a test run lives in a temp dir, purged with its logs before anyone can run `k2 stack logs`)."""
    err = ServiceFailed("kafka", "not healthy", "GET meta.json: 500", "", {"kafka-store": "E volume 1 not found"})
    text = str(err)
    assert "last lines of its log:\n    GET meta.json: 500" in text
    assert "last lines of the log of kafka-store, which it depends on:\n    E volume 1 not found" in text


def test_unknown_fixed_port_service_is_rejected_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown service 'zookeeper'"):
        LocalStack(tmp_path, fixed_ports={"zookeeper": 2181})
