"""Clock faults on real armed processes (no stack): libfaketime from the `libfaketime` package, a clock
domain in a temp dir, and the journal and watchdog restoring it after the runner is SIGKILLed.

Every process is started here and killed in teardown. Timing assertions state their tolerance.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from k2.chaos import faketime
from k2.chaos.errors import ChaosError, InjectionFailed, Unsupported
from k2.chaos.journal import Journal, read_entries
from k2.chaos.targets.base import wait_until
from k2.chaos.targets.clock import ClockTarget
from k2.chaos.watchdog import default_log_path

pytestmark = pytest.mark.integration

# An armed process that answers each line on stdin with its wall clock, after a real sleep: Debian's
# libfaketime 0.9.10 makes time.sleep fail (EINVAL) with FAKETIME_DONT_FAKE_MONOTONIC; the shipped build must not.
CLOCK_SERVER = textwrap.dedent("""
    import sys, time
    for line in sys.stdin:
        time.sleep(0.01)
        print(repr(time.time()), flush=True)
""")


@pytest.fixture
def domain(tmp_path: Path) -> Path:
    clock_dir = tmp_path / "clock" / "writer"
    faketime.prepare(clock_dir)
    return clock_dir


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(code: str, env: dict[str, str] | None = None, **options: object) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **(env or {})}, text=True,
                                **options)  # type: ignore[call-overload]  # fmt: skip
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait(10)


def clock_of(proc: subprocess.Popen[str]) -> float:
    """The process's wall clock minus the true one (s)."""
    assert proc.stdin is not None and proc.stdout is not None
    before = time.time()
    proc.stdin.write("?\n")
    proc.stdin.flush()
    seen = float(proc.stdout.readline())
    return seen - (before + time.time()) / 2


def armed_server(spawn: Callable[..., subprocess.Popen[str]], domain: Path) -> subprocess.Popen[str]:
    proc = spawn(CLOCK_SERVER, faketime.arm_env(domain), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert abs(clock_of(proc)) < 0.5  # started at the true time
    return proc


def test_skew_moves_an_armed_process_and_unskew_brings_it_back(
    spawn: Callable[..., subprocess.Popen[str]], domain: Path
) -> None:
    server = armed_server(spawn, domain)
    target = ClockTarget("writer", str(domain), service_pid=lambda: server.pid)
    effect = target.skew_clock(3600)
    assert abs(clock_of(server) - 3600) < 0.5  # within 0.5 s: the reading's own round trip
    assert server.pid in effect.detail["armed_pids"] and abs(effect.detail["reader_offset_s"] - 3600) < 0.5
    target.skew_clock(-86400)  # a jump back a day, live
    assert abs(clock_of(server) + 86400) < 0.5
    restored = target.unskew()
    assert abs(clock_of(server)) < 0.5 and restored.detail["previous_offset_s"] == -86400
    assert target.unskew().changed is False  # idempotent


def test_a_process_started_unarmed_is_refused_and_nothing_is_left_skewed(
    spawn: Callable[..., subprocess.Popen[str]], domain: Path
) -> None:
    armed_server(spawn, domain)  # someone follows the domain, but not the service
    plain = spawn(CLOCK_SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    target = ClockTarget("postgres", str(domain), service_pid=lambda: plain.pid)
    with pytest.raises(InjectionFailed, match="does not follow the clock file"):
        target.skew_clock(60)
    assert faketime.read_offset(domain) == 0.0


def test_a_service_that_is_not_running_is_refused(domain: Path) -> None:
    with pytest.raises(InjectionFailed, match="not running"):
        ClockTarget("postgres", str(domain), service_pid=lambda: None).skew_clock(60)
    assert faketime.read_offset(domain) == 0.0


def test_a_client_domain_moves_before_its_processes_start(
    spawn: Callable[..., subprocess.Popen[str]], domain: Path
) -> None:
    target = ClockTarget("producer", str(domain))
    assert target.skew_clock(-600).detail["armed_pids"] == []
    assert abs(clock_of(spawn(CLOCK_SERVER, faketime.arm_env(domain), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)) + 600) < 0.5  # fmt: skip
    target.unskew()


def test_static_binaries_are_unsupported_and_restoring_them_is_a_no_op() -> None:
    target = ClockTarget("kafka", None, unsupported="kafka is a static binary")
    with pytest.raises(Unsupported, match="static binary"):
        target.skew_clock(60)
    assert target.unskew().changed is False


def test_the_clock_dir_is_never_written_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir()
    (tmp_path / "clock").symlink_to(real)
    with pytest.raises(ChaosError, match="real directory"):
        faketime.write_offset(tmp_path / "clock", 60)
    assert not (real / faketime.OFFSET).exists()


# librdkafka's timed waits: glibc's C11 cnd_timedwait for 0.2 s past the (faked) now, timed on the monotonic clock.
C11_WAIT = textwrap.dedent("""
    import ctypes, sys, time
    libc = ctypes.CDLL(None, use_errno=True)  # the global scope: what librdkafka binds to, preloads first
    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]
    cond, mutex = ctypes.create_string_buffer(64), ctypes.create_string_buffer(64)
    assert libc.cnd_init(cond) == 0 and libc.mtx_init(mutex, 0) == 0 and libc.mtx_lock(mutex) == 0
    for line in sys.stdin:
        now = Timespec()
        libc.clock_gettime(0, ctypes.byref(now))  # CLOCK_REALTIME, as librdkafka computes its deadlines
        deadline = Timespec(now.tv_sec, now.tv_nsec + 200_000_000)
        if deadline.tv_nsec >= 1_000_000_000:
            deadline.tv_sec, deadline.tv_nsec = deadline.tv_sec + 1, deadline.tv_nsec - 1_000_000_000
        started = time.monotonic()
        libc.cnd_timedwait(cond, mutex, ctypes.byref(deadline))
        print(repr(time.monotonic() - started), flush=True)
""")


def test_c11_timed_waits_stay_short_after_a_forward_jump(
    spawn: Callable[..., subprocess.Popen[str]], domain: Path
) -> None:
    """Without the shim a process skewed 30 s forward sleeps 30 s in every C11 timed wait (a Kafka client
    stalls); with it the 0.2 s wait stays 0.2 s."""
    waiter = spawn(C11_WAIT, faketime.arm_env(domain), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert waiter.stdin is not None and waiter.stdout is not None

    def wait_once() -> float:
        waiter.stdin.write("?\n")  # type: ignore[union-attr]
        waiter.stdin.flush()  # type: ignore[union-attr]
        return float(waiter.stdout.readline())  # type: ignore[union-attr]

    assert wait_once() < 1.0
    ClockTarget("writer", str(domain), service_pid=lambda: waiter.pid).skew_clock(30)
    assert wait_once() < 2.0, "a C11 timed wait slept for the skew: the wait shim is not in effect"


RUNNER = """
import sys, time
from k2.chaos.journal import Journal
from k2.chaos.targets.clock import ClockTarget
from k2.chaos.watchdog import Watchdog
clock_dir, journal_path = sys.argv[1], sys.argv[2]
watchdog = Watchdog.start(journal_path)
journal = Journal(journal_path)
journal.inject(ClockTarget("writer", clock_dir), "skew_clock", {"offset_seconds": 7200}, fault="clock_skew")
print(watchdog.pid, flush=True)
time.sleep(120)
"""


def test_watchdog_restores_the_clock_after_the_runner_is_sigkilled(
    spawn: Callable[..., subprocess.Popen[str]], domain: Path, tmp_path: Path
) -> None:
    server = armed_server(spawn, domain)
    journal = tmp_path / "journal.jsonl"
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(domain), str(journal)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert runner.stdout is not None
        watchdog_pid = int(runner.stdout.readline())
        assert abs(clock_of(server) - 7200) < 0.5
        killed_at = time.monotonic()
        runner.kill()
        restored = wait_until(lambda: faketime.read_offset(domain) == 0.0, 5.0)
        latency = time.monotonic() - killed_at
        assert restored and latency < 3.0, f"watchdog restored the clock after {latency:.3f}s (limit 3 s)"
        assert abs(clock_of(server)) < 0.5
        assert wait_until(lambda: "recover_s" in default_log_path(journal).read_text(), 5.0)
        assert [e.status for e in read_entries(journal).values()] == ["restored"]
        print(f"watchdog restored a clock after runner SIGKILL: {latency * 1000:.1f} ms")
    finally:
        runner.kill()
        runner.wait(10)
        if wait_until(lambda: not Path(f"/proc/{watchdog_pid}").exists(), 10.0) is False:
            os.kill(watchdog_pid, 9)


def test_k2_chaos_recover_restores_a_clock_left_skewed(
    spawn: Callable[..., subprocess.Popen[str]], domain: Path, tmp_path: Path
) -> None:
    server = armed_server(spawn, domain)
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:  # a runner that went away without restoring
        journal.inject(ClockTarget("writer", str(domain)), "skew_clock", {"offset_seconds": -1800})
    assert abs(clock_of(server) + 1800) < 0.5
    for _ in range(2):  # idempotent
        done = subprocess.run([sys.executable, "-m", "k2", "chaos", "recover", "--journal", str(path)],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert abs(clock_of(server)) < 0.5 and faketime.read_offset(domain) == 0.0
