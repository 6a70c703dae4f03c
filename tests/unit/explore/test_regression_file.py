"""The shrinker's pytest file: valid, formatted Python that calls the public fault API, whatever the schedule."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import k2.chaos.faults as public
from k2.explore.errors import ExploreError
from k2.explore.kinds import KINDS
from k2.explore.nemesis import Nemesis
from k2.explore.regression import CALLS, call, regression_test, write_regression_test

from .helpers import INVENTORY, WRITERS, kill, schedule_of

HOSTILE = 'boom """\nimport os; os.system("x") \\ \x00 é'


def calls(source: str) -> list[str]:
    tree = ast.parse(source)
    return [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]


@pytest.mark.parametrize("seed", range(6))
def test_drawn_schedules_become_formatted_tests(seed: int, tmp_path: Path) -> None:
    schedule = Nemesis(INVENTORY, writers=WRITERS, intensity="high", max_concurrent=3).schedule(seed, 40)
    source = regression_test(schedule, found=HOSTILE, reason=HOSTILE, shrunk=HOSTILE, signature="data_loss:lost")
    tree = ast.parse(source)
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert [f.name for f in functions] == [f"test_explore_seed_{seed}_data_loss_lost"]
    assert [a.arg for a in functions[0].args.args] == ["explore_pipeline"]
    made = [c for c in calls(source) if c not in ("explore_pipeline", "ExitStack")]
    assert made == [call(f)[0] for f in schedule.faults], "one public fault call per planned fault, in order"
    assert "os.system" not in source.split('"""')[2], "free text stays inside the docstring"
    path = tmp_path / "test_regression.py"
    path.write_text(source)
    for command in (["check", "--quiet", "--no-cache"], ["format", "--check", "--quiet", "--no-cache"]):
        done = subprocess.run([sys.executable, "-m", "ruff", *command, str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_each_written_call_builds_exactly_the_explored_spec() -> None:
    assert set(CALLS) == set(KINDS), "every kind the catalogue has can be written out"
    drawn = [
        f
        for seed in range(30)
        for f in Nemesis(INVENTORY, writers=WRITERS, intensity="high").schedule(seed, 120).faults
    ]
    assert {f.kind for f in drawn} == set(KINDS)
    for fault in drawn:
        function, kwargs = call(fault)
        assert getattr(public, function)(fault.target, **kwargs).spec == fault.spec(), fault.describe()


def test_values_are_written_exactly(tmp_path: Path) -> None:
    schedule = schedule_of(kill(4, "writer-1", 3.25, 1.5), duration_s=9.5)
    source = regression_test(schedule, found="f", reason="r", shrunk="s", signature="hang:query")
    assert "run.until(3.25)  # fault #4 of the explored schedule" in source
    assert 'faults.enter_context(service_failure("writer-1", duration_seconds=1.5, mode="kill"))' in source
    assert "run.until(9.5)" in source and "def test_explore_seed_1_hang_query(" in source


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    schedule = schedule_of(kill(0, "kafka", 3, 1))
    target = tmp_path / "test_x.py"
    write_regression_test(target, schedule, found="f", reason="r", shrunk="s", signature="x")
    with pytest.raises(ExploreError, match="already exists"):
        write_regression_test(target, schedule, found="f", reason="r", shrunk="s", signature="x")
    link = tmp_path / "test_link.py"
    link.symlink_to(tmp_path / "elsewhere.py")
    with pytest.raises(ExploreError, match="already exists"):
        write_regression_test(link, schedule, found="f", reason="r", shrunk="s", signature="x")
    assert not (tmp_path / "elsewhere.py").exists()
