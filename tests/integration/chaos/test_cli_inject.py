"""`k2 chaos inject` on a real stack: the effect printed, held, restored; Ctrl-C restores at once; a killed
inject is healed by the watchdog; a fault the service's backend cannot do is refused with the route."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from k2.chaos.journal import read_entries
from k2.chaos.targets.base import wait_until
from k2.stack import LocalStack

pytestmark = pytest.mark.integration


def k2(*args: str, data_dir: object) -> list[str]:
    return [sys.executable, "-m", "k2", "chaos", *args, "--data-dir", str(data_dir)]


def healthy(stack: LocalStack, name: str) -> bool:
    return next(s for s in stack.status(timeout=1) if s.name == name).healthy


def pending(stack: LocalStack) -> list[object]:
    return [e for e in read_entries(stack.journal_path()).values() if e.pending]


def start(args: list[str]) -> subprocess.Popen[str]:
    """Start `k2 chaos inject` and wait (60 s at most) for its "injected" line."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
            break
        line = proc.stdout.readline()
        if not line or line.startswith("injected"):
            if line:
                return proc
            break
    proc.kill()
    pytest.fail(f"k2 chaos inject did not inject within 60 s: {proc.communicate()[0]}")


def test_inject_prints_the_effect_holds_and_restores(stack: LocalStack) -> None:
    stack.up()
    args = k2(
        "inject", "service_failure", "kafka-store", "--param", "mode=pause", "--for", "1.5s", data_dir=stack.data_dir
    )
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "injected service_failure('kafka-store', mode='pause'" in done.stdout
    # The effect names how the pause was made (cgroup-v1 as root here; cgroup-v2 or sigstop elsewhere).
    assert re.search(r"effect: frozen \(freezer (FROZEN|STOPPED)\) by (cgroup-v1|cgroup-v2|sigstop); probe unanswered",
                     done.stdout), done.stdout  # fmt: skip
    # The outage lasts 1.5 s from when the pause was verified (the verification waits up to 1 s for the probe).
    held = re.search(r"restored after ([0-9.]+)s", done.stdout)
    applied = re.search(r"probe unanswered \[process, ([0-9.]+) ms\]", done.stdout)
    assert held and applied and 1.5 <= float(held.group(1)) <= 1.5 + float(applied.group(1)) / 1000 + 2, done.stdout
    assert re.search(r"effect: thawed by (cgroup-v1|cgroup-v2|sigstop) \[process", done.stdout), done.stdout
    assert healthy(stack, "kafka-store") and pending(stack) == []


def test_ctrl_c_restores_at_once(stack: LocalStack) -> None:
    stack.up()
    proc = start(k2("inject", "network_partition", "postgres", "--for", "300s", data_dir=stack.data_dir))
    try:
        assert not healthy(stack, "postgres")
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
        assert time.monotonic() - started < 10
    finally:
        proc.kill()
    assert healthy(stack, "postgres") and pending(stack) == []


def test_a_killed_inject_is_healed_by_the_watchdog(stack: LocalStack) -> None:
    stack.up()
    proc = start(k2("inject", "service_failure", "s3", "--param", "mode=pause", "--for", "300s",
                    data_dir=stack.data_dir))  # fmt: skip
    try:
        assert not healthy(stack, "s3") and len(pending(stack)) == 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert wait_until(lambda: healthy(stack, "s3"), 30, cap=0.2), "s3 still paused 30 s after the kill"
        assert wait_until(lambda: pending(stack) == [], 10, cap=0.05)
    finally:
        proc.kill()


def test_a_fault_the_backend_cannot_do_is_refused_with_the_route(stack: LocalStack) -> None:
    stack.up()
    done = subprocess.run(k2("inject", "disk_fill", "postgres", data_dir=stack.data_dir), capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2
    assert "postgres: no declared target has the disk capability" in done.stderr and "DiskTarget" in done.stderr
    assert pending(stack) == []
    bad = subprocess.run(k2("inject", "service_failure", "kafka", "--param", "mode=explode", data_dir=stack.data_dir),
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert bad.returncode == 2 and "unknown mode 'explode'" in bad.stderr
