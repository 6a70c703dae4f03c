"""`k2 chaos halt` and `recover` on journals a crash, a hand edit or a recycled pid made strange:
every entry that can be restored is, the bad lines are named with the file, the line and the remedy,
and only the runner itself (pid AND kernel start time) is ever signalled."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.chaos.test_journal import CALLS, FakeTarget

from k2.chaos.errors import RestoreFailed
from k2.chaos.journal import Journal, read_journal
from k2.chaos.runner import halt
from k2.chaos.targets.process import proc_stat
from k2.cli import main


@pytest.fixture(autouse=True)
def _clear_calls() -> Iterator[None]:
    CALLS.clear()
    yield


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not the runner: it must never be signalled."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait(10)


def _journal_with(tmp_path: Path, *targets: FakeTarget) -> Path:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    for target in targets:
        journal.inject(target, "pause")
    journal.close()
    return path


def _rewrite_runner(path: Path, pid: int, starttime: int) -> None:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for record in lines:
        record["runner_pid"], record["runner_starttime"] = pid, starttime
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_halt_never_signals_a_recycled_pid(tmp_path: Path, bystander: subprocess.Popen[bytes]) -> None:
    path = _journal_with(tmp_path, FakeTarget("a", tmp_path / "a"))
    real = proc_stat(bystander.pid)
    assert real is not None
    _rewrite_runner(path, bystander.pid, real.starttime + 12345)  # same pid, another process's start time
    assert len(halt(path)) == 1 and ("a", "resume") in CALLS
    assert bystander.poll() is None  # still running: not SIGTERMed


def test_halt_signals_the_runner_it_recorded(tmp_path: Path, bystander: subprocess.Popen[bytes]) -> None:
    path = _journal_with(tmp_path, FakeTarget("a", tmp_path / "a"))
    real = proc_stat(bystander.pid)
    assert real is not None
    _rewrite_runner(path, bystander.pid, real.starttime)
    halt(path)
    assert bystander.wait(10) == -15


def test_halt_restores_every_entry_even_when_one_fails(tmp_path: Path) -> None:
    targets = [FakeTarget("a", tmp_path / "a"), FakeTarget("b", tmp_path / "b", fail="resume"),
               FakeTarget("c", tmp_path / "c")]  # fmt: skip
    path = _journal_with(tmp_path, *targets)
    with pytest.raises(RestoreFailed, match="b: resume failed on purpose"):
        halt(path)
    assert {name for name, primitive in CALLS if primitive == "resume"} == {"a", "b", "c"}
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


@pytest.mark.parametrize("bad", ["null", "42", '"text"', "[]", '{"id": 1}', '{"id": "x", "status": "active"}'])
def test_corrupt_lines_are_reported_and_the_rest_recovered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    path = _journal_with(tmp_path, FakeTarget("a", tmp_path / "a"))
    good = path.read_text()
    path.write_text(good.splitlines()[0] + "\n" + bad + "\n" + "\n".join(good.splitlines()[1:]) + "\n")
    entries, problems = read_journal(path)
    assert len(entries) == 1 and len(problems) == 1
    assert f"{path} line 2" in problems[0] and "remove the line" in problems[0]
    assert main(["chaos", "recover", "--journal", str(path)]) == 0
    err = capsys.readouterr().err
    assert "line 2" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()  # the valid entry was restored


@pytest.mark.parametrize("bad", ["null", "42", '{"data_dir": "/x", "services": []}', '{"services": {}}',
                                 '{"data_dir": "/x", "services": {"kafka": 7}}', "{"])  # fmt: skip
def test_corrupt_state_file_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str) -> None:
    (tmp_path / "stack.json").write_text(bad)
    assert main(["stack", "status", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"state file {tmp_path / 'stack.json'}" in err and "remove it" in err and "Traceback" not in err
