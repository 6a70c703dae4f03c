"""`k2 chaos run --parallel N`: how the scenarios are split over stacks, how many stacks a run gets, and how the
shards' reports become one."""

from __future__ import annotations

import pytest

from k2.chaos.errors import ChaosError
from k2.chaos.outcome import Outcome
from k2.chaos.report import RunReport, ScenarioResult, merge_runs
from k2.chaos.runner import RunOptions, shard_count
from k2.chaos.shards import MULTI_BROKER_FIXTURE, assign, parse_shard


def test_multi_broker_scenarios_share_the_first_shard_and_the_rest_are_dealt_in_turn() -> None:
    plain, multi = ("chaos_session",), ("chaos_session", MULTI_BROKER_FIXTURE)
    fixtures = [plain, multi, plain, plain, multi, plain, plain]
    assert assign(fixtures, 2) == [1, 1, 2, 1, 1, 2, 1]
    assert assign(fixtures, 1) == [1] * 7
    shards = assign([plain] * 9, 3)
    assert sorted(shards.count(n) for n in (1, 2, 3)) == [3, 3, 3]


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/5", "a/b", "1", "1/0", ""])
def test_a_bad_shard_names_the_form(text: str) -> None:
    with pytest.raises(ChaosError, match="I/N"):
        parse_shard(text)


def test_a_shard_is_read() -> None:
    assert parse_shard(" 2/3 ") == (2, 3)


def test_two_stacks_by_default_only_when_every_shard_can_have_a_fresh_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pathlib import Path

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert shard_count(RunOptions()) == 2
    assert shard_count(RunOptions(data_dir=Path("stack"))) == 1
    assert shard_count(RunOptions(keep_stack=True)) == 1
    assert shard_count(RunOptions(backend="docker")) == 2  # a Compose project per shard's own data dir
    assert shard_count(RunOptions(backend="docker", project="mine")) == 1
    assert shard_count(RunOptions(parallel=3)) == 3
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert shard_count(RunOptions()) == 1


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (RunOptions(parallel=0), "give 1 to 4"),
        (RunOptions(parallel=9), "give 1 to 4"),
        (RunOptions(parallel=2, keep_stack=True), "drop those, or use --parallel 1"),
        (RunOptions(parallel=2, backend="docker", project="mine"), "drop those, or use --parallel 1"),
    ],
)
def test_parallel_that_cannot_work_is_refused_with_the_remedy(options: RunOptions, says: str) -> None:
    with pytest.raises(ChaosError, match=says):
        shard_count(options)


def _scenario(name: str, started: float, outcome: Outcome = Outcome.PASS) -> ScenarioResult:
    return ScenarioResult(name=name, nodeid=f"suite.py::{name}", outcome=outcome, started_at=started)


def test_shard_reports_merge_into_one_run_in_start_order() -> None:
    first = RunReport(seed=7, started_at=100.0, finished_at=160.0, backend="local", versions={"tansu": "0.6"},
                      scenarios=[_scenario("a", 101.0), _scenario("c", 130.0, Outcome.DATA_LOSS)])  # fmt: skip
    second = RunReport(seed=7, started_at=99.0, finished_at=170.0, backend="local", versions={"python": "3.11"},
                       scenarios=[_scenario("b", 110.0)])  # fmt: skip
    merged = merge_runs([first, second])
    assert [s.name for s in merged.scenarios] == ["a", "b", "c"]
    assert (merged.seed, merged.started_at, merged.finished_at) == (7, 99.0, 170.0)
    assert merged.versions == {"tansu": "0.6", "python": "3.11"}
    assert merged.failed and merged.outcome is Outcome.DATA_LOSS


def test_shards_of_different_seeds_are_not_one_run() -> None:
    with pytest.raises(ValueError, match="share one seed"):
        merge_runs([RunReport(seed=1, started_at=0.0), RunReport(seed=2, started_at=0.0)])
