"""service_failure and resource_limit on the real embedded stack, with a real idempotent producer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from tests.integration.chaos.conftest import AckCounter, new_topic, read_all

from k2.chaos.errors import ChaosError, InvalidFault, UnsafeTarget
from k2.chaos.faults import resource_limit, service_failure
from k2.chaos.journal import read_entries
from k2.stack import LocalStack

pytestmark = pytest.mark.integration


def values(prefix: str, n: int) -> list[bytes]:
    return [f"{prefix}-{i}".encode() for i in range(n)]


def assert_exactly_once(bootstrap: str, topic: str, sent: list[bytes]) -> None:
    got = read_all(bootstrap, topic, len(sent))
    duplicates = [v for v, c in Counter(got).items() if c > 1]
    assert duplicates == []
    assert sorted(got) == sorted(sent)


@pytest.mark.parametrize("mode", ["pause", "stop", "kill"])
def test_kafka_outage_loses_and_duplicates_nothing(stack: LocalStack, session: object, mode: str) -> None:
    bootstrap = stack.endpoints().kafka_bootstrap
    topic = new_topic(bootstrap)
    producer = AckCounter(bootstrap, topic)
    before, during, after = values("before", 200), values("during", 300), values("after", 200)
    producer.send(before)
    assert producer.producer.flush(30) == 0 and len(producer.acked) == 200

    with service_failure("kafka", duration_seconds=3, mode=mode) as fault:
        producer.send(during)
        producer.producer.poll(1.0)
        # Nothing is acknowledged while the broker is frozen or gone: the producer buffers.
        assert len(producer.acked) == 200
    assert fault.record.restored_at is not None
    assert fault.record.restored_at - fault.record.injected_at >= 3.0

    producer.send(after)
    assert producer.producer.flush(60) == 0
    assert producer.failed == []
    assert len(producer.acked) == 700
    assert_exactly_once(bootstrap, topic, before + during + after)
    assert all(s.healthy for s in stack.status())


def test_pause_is_verified_frozen_and_unanswering(stack: LocalStack, session: object) -> None:
    with service_failure("schema-registry", duration_seconds=None, mode="pause") as fault:
        assert fault.effect.frozen and fault.effect.freezer_state == "FROZEN"
        assert fault.effect.answered is False
    assert fault.restore_effect.freezer_state in (None, "THAWED")
    assert stack.status()[-1].healthy


def test_stop_records_the_restart(stack: LocalStack, session: object) -> None:
    old = stack.state().services["s3"].process.pid
    with service_failure("s3", duration_seconds=1, mode="stop") as fault:
        assert fault.effect.gone is True
    assert fault.restore_effect.previous_pid == old
    assert stack.state().services["s3"].process.pid == fault.restore_effect.pid != old


def test_three_concurrent_faults_on_different_services(stack: LocalStack, session: object) -> None:
    with (
        service_failure("kafka-store", duration_seconds=None, mode="pause") as paused,
        service_failure("s3", duration_seconds=None, mode="stop") as stopped,
        resource_limit("postgres", cpu_quota=20000, mem_limit=None) as limited,
    ):
        assert {f.active for f in (paused, stopped, limited)} == {True}
        assert len(session.active) == 3
    ends = [paused.record.restored_at, stopped.record.restored_at, limited.record.restored_at]
    assert all(ends)
    # Innermost first, as `with` unwinds.
    assert limited.record.restored_at <= stopped.record.restored_at <= paused.record.restored_at
    assert session.active == []
    assert all(s.healthy for s in stack.status())
    assert [e for e in read_entries(stack.journal_path()).values() if e.pending] == []


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_cpu_quota_throttles_kafka(stack: LocalStack, session: object) -> None:
    """Under a 2% quota the broker gets at most a few percent of a core while busy, and is throttled."""
    bootstrap = stack.endpoints().kafka_bootstrap
    topic = new_topic(bootstrap)
    pid = stack.state().services["kafka"].process.pid

    def busy_share(producer: AckCounter, label: str) -> float:
        """The broker's CPU use, in cores, over 2 s of a backlog of tiny produce requests."""
        producer.send(values(label, 20000))
        cpu0, wall0 = cpu_seconds(pid), time.monotonic()
        producer.producer.flush(2.0)
        return (cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0)

    producer = AckCounter(bootstrap, topic, **{"linger.ms": 0, "batch.num.messages": 10})
    baseline = busy_share(producer, "base")
    with resource_limit("kafka", cpu_quota=2000, mem_limit=None) as fault:
        limited = busy_share(producer, "limited")
    assert producer.producer.flush(120) == 0 and len(producer.acked) == 40000
    assert fault.effect.cpu_quota_us == 2000
    # Held to the quota (2% of a core, a little over for the period boundaries) and throttled by the kernel.
    # The unlimited baseline is only context: on a loaded machine the broker may not get more either.
    assert limited < 0.05, (baseline, limited)
    restored = fault.restore_effect
    assert restored.throttled_periods > 0, restored
    assert restored.restored is True


def test_memory_limit_below_need_gets_the_backend_oom_killed(stack: LocalStack, session: object) -> None:
    uri = stack.endpoints().postgres_uri
    with resource_limit("postgres", cpu_quota=None, mem_limit="160m", duration_seconds=None) as fault:
        assert fault.effect.mem_bytes == 160 * 1024 * 1024
        with pytest.raises(psycopg.OperationalError), psycopg.connect(uri, connect_timeout=10) as conn:
            conn.execute("SET work_mem = '1GB'")
            conn.execute("SELECT count(*) FROM (SELECT g, repeat('x', 100) FROM generate_series(1, 5000000) g "
                         "ORDER BY 2 DESC, 1) s")  # fmt: skip
    assert "terminated by signal 9" in stack.logs("postgres", 200)
    assert fault.restore_effect.oom_kills >= 1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not stack.status()[3].healthy:
        time.sleep(0.2)
    assert stack.status()[3].healthy


def healthy(stack: LocalStack, name: str) -> bool:
    return next(s for s in stack.status(timeout=1) if s.name == name).healthy


def test_a_fault_entered_again_injects_again_and_leaves_nothing_faulted(stack: LocalStack, session: object) -> None:
    """Issue #10 §4: the same Fault object in a second `with` pauses the service again and resumes it after
    (it used to inject but never restore, leaving the service paused after the session)."""
    fault = service_failure("kafka-store", duration_seconds=None, mode="pause")
    for _ in range(2):
        with fault:
            assert not healthy(stack, "kafka-store")
        assert healthy(stack, "kafka-store")
    assert [e for e in read_entries(stack.journal_path()).values() if e.pending] == []


def test_a_fault_entered_while_it_holds_is_refused_and_the_first_keeps_holding(
    stack: LocalStack, session: object
) -> None:
    """Nested `with fault:` of the same fault is refused with the reason, before anything is touched; the
    outer fault still holds (a failed inner inject used to undo it) and is restored on its own exit."""
    fault = service_failure("kafka-store", duration_seconds=None, mode="pause")
    with fault:
        with pytest.raises(ChaosError, match="already under"), fault:
            pass
        assert not healthy(stack, "kafka-store")
    assert healthy(stack, "kafka-store")
    assert [e for e in read_entries(stack.journal_path()).values() if e.pending] == []


def test_unknown_target_is_refused_before_anything_is_touched(stack: LocalStack, session: object) -> None:
    before = len(read_entries(stack.journal_path()))
    with pytest.raises(UnsafeTarget, match="not a service of the declared stack"), service_failure("zookeeper"):
        pass
    assert len(read_entries(stack.journal_path())) == before


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: service_failure("kafka", mode="explode"), "unknown mode"),
        (lambda: service_failure("kafka", duration_seconds=-1), "must be positive"),
        (lambda: service_failure("kafka", duration_seconds=10**9), "more than a day"),
        (lambda: service_failure("kafka", duration_seconds="5"), "give a number of seconds"),
        (lambda: resource_limit("kafka", cpu_quota=-5), "negative"),
        (lambda: resource_limit("kafka", cpu_quota=10**9), "would limit nothing"),
        (lambda: resource_limit("kafka", mem_limit="lots"), "mem_limit"),
        (lambda: resource_limit("kafka", cpu_quota=None, mem_limit=None), "give cpu_quota"),
    ],
)
def test_invalid_parameters_are_rejected_when_built(build: object, message: str) -> None:
    with pytest.raises(InvalidFault, match=message):
        build()  # type: ignore[operator]


RUNNER = """
import sys, time
from k2.stack import LocalStack
from k2.chaos.faults import service_failure
from k2.testing import chaos_session
stack = LocalStack(sys.argv[1])
with chaos_session(stack):
    with service_failure(sys.argv[2], duration_seconds=None, mode=sys.argv[3]):
        print("injected", flush=True)
        time.sleep(300)
"""


@pytest.mark.parametrize(("service", "mode"), [("kafka", "pause"), ("s3", "stop")])
def test_runner_killed_mid_fault_is_restored_by_the_watchdog(stack: LocalStack, service: str, mode: str) -> None:
    stack.up()
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(stack.data_dir), service, mode], stdout=subprocess.PIPE, text=True
    )
    try:
        assert runner.stdout is not None and runner.stdout.readline().strip() == "injected"
        assert not next(s for s in stack.status(timeout=1) if s.name == service).healthy
        killed_at = time.monotonic()
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(10)
        deadline = killed_at + 60
        while time.monotonic() < deadline and not next(s for s in stack.status() if s.name == service).healthy:
            time.sleep(0.1)
        recovered_in = time.monotonic() - killed_at
        while time.monotonic() < deadline and any(e.pending for e in read_entries(stack.journal_path()).values()):
            time.sleep(0.1)
    finally:
        runner.kill()
    assert next(s for s in stack.status() if s.name == service).healthy
    assert recovered_in < (5 if mode == "pause" else 30)
    assert [e for e in read_entries(stack.journal_path()).values() if e.pending] == []
    log = Path(str(stack.journal_path()) + ".watchdog.log").read_text()
    assert "restored" in log


def test_recover_command_is_idempotent(stack: LocalStack) -> None:
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "k2", "chaos", "recover", "--data-dir", str(stack.data_dir)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "no fault pending" in done.stderr or "nothing to recover" in done.stderr


def test_halt_from_another_terminal_restores_at_once_and_stops_the_run(stack: LocalStack) -> None:
    """`k2 chaos halt` restores every active fault itself, then asks the runner to stop (SIGTERM)."""
    stack.up()
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(stack.data_dir), "kafka", "pause"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert runner.stdout is not None and runner.stdout.readline().strip() == "injected"
        started = time.monotonic()
        halted = subprocess.run(
            [sys.executable, "-m", "k2", "chaos", "halt", "--data-dir", str(stack.data_dir)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert halted.returncode == 0, halted.stderr
        assert "service_failure on kafka" in halted.stderr
        assert next(s for s in stack.status() if s.name == "kafka").healthy
        assert runner.wait(30) != 0  # stopped by the halt, not by finishing its 300 s body
        assert time.monotonic() - started < 30
    finally:
        runner.kill()
    assert [e for e in read_entries(stack.journal_path()).values() if e.pending] == []
