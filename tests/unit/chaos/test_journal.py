"""Journal: durable before injection, one runner at a time, recovery from the file alone."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from k2.chaos.errors import InjectionFailed, InvalidFault, RestoreFailed
from k2.chaos.journal import Journal, JournalBusy, PendingFaults, read_entries
from k2.chaos.targets import Effect, register_target
from k2.chaos.targets.process import proc_stat

CALLS: list[tuple[str, str]] = []


class FakeTarget:
    """Records primitive calls; its state lives in a file so a rebuilt instance sees it."""

    kind = "fake-journal-test"

    def __init__(self, name: str, state: Path, journal: Path | None = None, fail: str = "") -> None:
        self.name, self.state, self.journal, self.fail = name, state, journal, fail

    @classmethod
    def from_description(cls, desc: Mapping[str, Any]) -> FakeTarget:
        return cls(desc["name"], Path(desc["state"]), fail=desc.get("fail", ""))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "state": str(self.state), "fail": self.fail}

    def _do(self, primitive: str, applied: bool) -> Effect:
        CALLS.append((self.name, primitive))
        if self.journal is not None:  # what a crash at this instant would leave behind
            statuses = [e.status for e in read_entries(self.journal).values()]
            assert statuses and statuses[-1] == "injecting", statuses
        if primitive == self.fail:
            raise RestoreFailed(f"{self.name}: {primitive} failed on purpose")
        was = self.state.exists()
        if applied:
            self.state.touch()
        else:
            self.state.unlink(missing_ok=True)
        return Effect(primitive=primitive, target=self.name, backend=self.kind, started_at=time.time(), duration_s=0.0,
                      detail={"applied": applied}, changed=was != applied)  # fmt: skip

    def pause(self, **_: Any) -> Effect:
        return self._do("pause", True)

    def resume(self, **_: Any) -> Effect:
        return self._do("resume", False)


register_target(FakeTarget.kind, FakeTarget.from_description)


@pytest.fixture(autouse=True)
def _clear_calls() -> Iterator[None]:
    CALLS.clear()
    yield


def test_entry_is_durable_before_injection_and_lifecycle(tmp_path: Path) -> None:
    path = tmp_path / "j" / "journal.jsonl"
    target = FakeTarget("kafka", tmp_path / "kafka.paused", journal=path)
    with Journal(path) as journal:
        entry_id, effect = journal.inject(target, "pause", {"duration_s": 5}, fault="service_failure")
        assert effect.detail == {"applied": True}
        assert [e.status for e in journal.pending()] == ["active"]
        target.journal = None
        journal.restore(entry_id, target)
        assert journal.pending() == []
    statuses = [json.loads(line)["status"] for line in path.read_text().splitlines()]
    assert statuses == ["injecting", "active", "restored"]
    entry = read_entries(path)[entry_id]
    assert entry.params == {"duration_s": 5} and entry.fault == "service_failure" and entry.restore
    assert CALLS == [("kafka", "pause"), ("kafka", "resume")]


def test_pending_faults_block_the_next_run_until_recovered(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.inject(FakeTarget("kafka", tmp_path / "kafka.paused"), "pause", fault="service_failure")
    journal.close()  # the runner went away without restoring
    with pytest.raises(PendingFaults, match=r"service_failure on kafka.*k2 chaos recover"):
        Journal(path)
    with Journal(path, recover=True) as journal:
        restored = journal.recover()
        assert [e.status for e in restored] == ["restored"]
        assert not (tmp_path / "kafka.paused").exists()
        assert journal.recover() == []  # idempotent
    Journal(path).close()  # a clean journal opens
    assert CALLS == [("kafka", "pause"), ("kafka", "resume")]


def test_a_journal_with_nothing_pending_starts_empty(tmp_path: Path) -> None:
    """Restored entries of earlier runs are dropped when the next run opens it; pending ones never are."""
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        entry_id, _ = journal.inject(FakeTarget("kafka", tmp_path / "kafka.paused"), "pause", fault="service_failure")
        journal.restore(entry_id, FakeTarget("kafka", tmp_path / "kafka.paused"))
        journal.inject(FakeTarget("s3", tmp_path / "s3.paused"), "pause", fault="service_failure")
    with Journal(path, recover=True) as journal:  # one still pending: everything is kept
        assert len(read_entries(path)) == 2 and [e.target["name"] for e in journal.pending()] == ["s3"]
        journal.recover()
    assert len(read_entries(path)) == 2
    with Journal(path) as journal:
        assert journal.entries() == {} and path.read_bytes() == b""
        entry_id, _ = journal.inject(FakeTarget("kafka", tmp_path / "kafka.paused"), "pause", fault="service_failure")
    assert list(read_entries(path)) == [entry_id]


def test_crash_between_injecting_and_active(tmp_path: Path) -> None:
    """A runner SIGKILLed right after the "injecting" line: the entry is recovered, and the
    inverse is safe although the effect never landed."""
    path = tmp_path / "journal.jsonl"
    svc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        code = textwrap.dedent(f"""
            import os, signal
            from k2.chaos.journal import Journal
            from k2.chaos.targets.process import ProcessSpec, ProcessTarget
            target = ProcessTarget(ProcessSpec.for_pid("svc", {svc.pid}, run_id="unit-crash"))
            Journal({str(path)!r}).begin(target, "pause", {{}})
            os.kill(os.getpid(), signal.SIGKILL)
        """)
        runner = subprocess.run([sys.executable, "-c", code], timeout=30, check=False)
        assert runner.returncode == -signal.SIGKILL
        with pytest.raises(PendingFaults, match="pause on svc"):
            Journal(path)
        with Journal(path, recover=True) as journal:
            [entry] = journal.recover()
        assert entry.status == "restored" and entry.restore is not None and entry.restore["changed"] is False
        assert proc_stat(svc.pid) is not None and proc_stat(svc.pid).state == "S"  # type: ignore[union-attr]
    finally:
        svc.kill()
        svc.wait(10)


def test_torn_last_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        entry_id, _ = journal.inject(FakeTarget("s3", tmp_path / "s3.paused"), "pause")
    with path.open("ab") as f:
        f.write(b'{"id": "' + entry_id.encode() + b'", "status": "rest')  # crash mid-write
    assert read_entries(path)[entry_id].status == "active"
    with Journal(path, recover=True) as journal:
        assert [e.id for e in journal.recover()] == [entry_id]
    assert read_entries(path)[entry_id].status == "restored"  # not spliced onto the torn line


def test_one_runner_per_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path), pytest.raises(JournalBusy, match="another K2 runner"):
        Journal(path, lock_timeout=0.1)
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from k2.chaos.journal import Journal; j = Journal({str(path)!r}); input()"],
        stdin=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait until the child holds the lock
            try:
                Journal(path).close()
            except JournalBusy:
                break
            time.sleep(0.02)
        else:
            pytest.fail("child never took the lock")
        holder.kill()  # the kernel drops a dead holder's lock
        holder.wait(10)
        Journal(path, lock_timeout=5).close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


def test_failed_injection_stays_pending_and_recover_reports_failures(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        with pytest.raises(InvalidFault, match="no inverse"):
            journal.begin(FakeTarget("x", tmp_path / "x"), "explode")
        bad = FakeTarget("pg", tmp_path / "pg.paused", fail="pause")
        with pytest.raises(RestoreFailed):
            journal.inject(bad, "pause")
        [entry] = journal.pending()
        assert entry.status == "injecting" and entry.error and "inject: RestoreFailed" in entry.error
        journal.inject(FakeTarget("ok", tmp_path / "ok.paused"), "pause")
        stuck = FakeTarget("stuck", tmp_path / "stuck.paused", fail="resume")
        journal.inject(stuck, "pause")
    with Journal(path, recover=True) as journal, pytest.raises(RestoreFailed, match="1 fault.*stuck"):
        journal.recover()
    pending = read_entries(path)
    assert [e.target["name"] for e in pending.values() if e.pending] == ["stuck"]
    assert not (tmp_path / "ok.paused").exists()


def test_parameters_that_are_not_json_are_refused_before_injection(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.jsonl") as journal:
        with pytest.raises(InvalidFault, match="not JSON"):
            journal.inject(FakeTarget("k", tmp_path / "k"), "pause", {"probe": object()})
        assert journal.pending() == []
    assert CALLS == []


def test_inject_failure_is_recorded_not_swallowed(tmp_path: Path) -> None:
    class Broken(FakeTarget):
        def pause(self, **_: Any) -> Effect:
            raise InjectionFailed("broken: on purpose")

    with Journal(tmp_path / "j.jsonl") as journal, pytest.raises(InjectionFailed):
        journal.inject(Broken("b", tmp_path / "b"), "pause")
    [entry] = read_entries(tmp_path / "j.jsonl").values()
    assert entry.pending and entry.error == "inject: InjectionFailed: broken: on purpose"
