"""The chaos plugin: the seed's markers and options, the run's state, the ledger and checker fixtures, and a
timeout per scenario (k2.chaos.pytest_verdict judges each scenario and writes the reports). It knows no
stack: K2's `pytest11` entry point, k2.testing.pytest_plugin, composes it with the stack, the session and
the seed's fault fixtures; nothing starts unless a test asks for a chaos fixture.
"""

from __future__ import annotations

import faulthandler
import random
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from k2.chaos.checker import CheckResult, Observed, check
from k2.chaos.errors import ChaosError
from k2.chaos.faults import Terminated
from k2.chaos.ledger import Ledger
from k2.chaos.outcome import Outcome
from k2.chaos.seeds import Draws, new_seed, rng_for
from k2.chaos.shards import assign, parse_shard

MARKERS = {
    "chaos": "a chaos scenario: destructive, injects faults into the stack",
    "chaos_kafka": "a chaos scenario against Kafka (the broker, its store, the schema registry)",
    "chaos_storage": "a chaos scenario against storage (S3, the catalog database, the query engine)",
    "chaos_api": "a chaos scenario against the query API (rate limits, its circuit breaker, the gateway process)",
    "chaos_clock": "a chaos scenario skewing clocks (time jumps, DST, a producer behind the broker)",
    "chaos_consumer": "a chaos scenario against the consumer side: the Iceberg writer's group rebalancing",
    "chaos_schema": "a chaos scenario against schema evolution: the registry, producers and the writer",
    "slow": "takes more than a few seconds",
}


MULTI_BROKERS = 3  # what the multi-broker scenarios need (see --chaos-brokers)
SUITE_MARKERS = ("chaos_kafka", "chaos_storage", "chaos_consumer", "chaos_schema", "chaos_api", "chaos_clock")


class ScenarioTimeout(BaseException):
    """The scenario outlived its timeout (a HANG). BaseException: test code's `except Exception` cannot eat it."""


@dataclass
class ScenarioState:
    ledger: Ledger | None = None
    checks: list[CheckResult] = field(default_factory=list)
    first_fault: int = 0
    faults: list[Any] = field(default_factory=list)
    timed_out: bool = False
    stack_dump: str | None = None
    started_at: float = 0.0
    # when its own cleanup ended: the run's stack stopping after the last scenario is not that scenario's time
    finished_at: float | None = None
    verdict: tuple[Outcome, str] | None = None  # with its reason, judged when the scenario's body ended
    error: BaseException | None = None
    draws: Draws | None = None  # the seeded decisions that shaped its faults


@dataclass
class ChaosRun:
    """Per-run state, kept in config.stash."""

    seed: int
    report_dir: Path
    timeout: float
    keep_stack: bool
    data_dir: Path | None
    backend: str
    project: str | None = None
    brokers: int | None = None
    results: list[Any] = field(default_factory=list)
    scenarios: dict[str, ScenarioState] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    versions: dict[str, str] = field(default_factory=dict)
    report: Any = None  # the RunReport, once written
    written: dict[str, Path] = field(default_factory=dict)
    heal_failures: list[tuple[str, str]] = field(default_factory=list)  # (scenario, error): heals failed in a row


RUN = pytest.StashKey[ChaosRun]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("k2-chaos", "K2 chaos testing")
    group.addoption("--chaos-seed", type=int, default=None, help="seed for every random choice (printed in reports)")
    group.addoption(
        "--chaos-backend",
        default="local",
        choices=("local", "docker"),
        help="where the stack runs: local processes, or docker containers (scripts/docker-setup.sh)",
    )
    group.addoption("--chaos-project", default=None, help="docker backend: Compose project (default: one per data dir)")
    group.addoption("--chaos-report-dir", type=Path, default=Path("chaos-reports"), help="where reports are written")
    group.addoption("--chaos-timeout", type=float, default=180.0, help="seconds before a scenario counts as a HANG")
    group.addoption("--chaos-keep-stack", action="store_true", help="leave the stack running after the run")
    group.addoption("--chaos-data-dir", type=Path, default=None, help="stack data dir (reuses a running stack)")
    group.addoption(
        "--chaos-brokers",
        type=int,
        default=None,
        help=f"Kafka brokers of the run's stack (default: {MULTI_BROKERS} when a selected scenario uses "
        "`multi_broker_config`, else 1; a reused stack keeps its own)",
    )
    group.addoption(
        "--chaos-shard",
        default=None,
        help="I/N: run only this process's share of the selected scenarios (`k2 chaos run --parallel N` "
        "starts one per stack; see k2.chaos.shards)",
    )


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    seed = config.getoption("--chaos-seed", None)
    config.stash[RUN] = ChaosRun(
        seed=seed if seed is not None else new_seed(),
        report_dir=config.getoption("--chaos-report-dir", Path("chaos-reports")),
        timeout=config.getoption("--chaos-timeout", 180.0),
        keep_stack=config.getoption("--chaos-keep-stack", False),
        data_dir=config.getoption("--chaos-data-dir", None),
        backend=config.getoption("--chaos-backend", "local"),
        project=config.getoption("--chaos-project", None),
        brokers=config.getoption("--chaos-brokers", None),
    )


@pytest.hookimpl(trylast=True)  # after -k and -m: the share is of what is selected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    text = config.getoption("--chaos-shard", None)
    if not text:
        return
    try:
        mine, count = parse_shard(text)
    except ChaosError as exc:
        raise pytest.UsageError(str(exc)) from None
    shards = assign([getattr(item, "fixturenames", ()) for item in items], count)
    kept = [item for item, shard in zip(items, shards, strict=True) if shard == mine]
    config.hook.pytest_deselected(items=[item for item, shard in zip(items, shards, strict=True) if shard != mine])
    items[:] = kept


def pytest_sessionstart(session: pytest.Session) -> None:
    """SIGTERM (e.g. from `k2 chaos halt`) ends the current scenario, restoring its faults, and the run."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def on_sigterm(signum: int, frame: object) -> None:
        session.shouldstop = "halted by SIGTERM (k2 chaos halt)"
        raise Terminated("the chaos run was halted; faults are being restored")

    signal.signal(signal.SIGTERM, on_sigterm)


def _run(request: pytest.FixtureRequest) -> ChaosRun:
    return request.config.stash[RUN]


def _scenario(item: pytest.Item) -> ScenarioState | None:
    return item.config.stash[RUN].scenarios.get(item.nodeid)


def scenario_state(request: pytest.FixtureRequest) -> ScenarioState:
    return _run(request).scenarios.setdefault(request.node.nodeid, ScenarioState())


def scenario_key(item: pytest.Item) -> str:
    """The scenario's name for its random streams and the fault schedule: its module and test id, the same
    however it was collected (`k2 chaos run`, `pytest tests/chaos`, from another directory)."""
    function = getattr(item, "function", None)
    module = getattr(function, "__module__", None) or item.nodeid.split("::", 1)[0]
    return f"{module}::{item.nodeid.split('::', 1)[-1]}"


@pytest.fixture
def chaos_seed(request: pytest.FixtureRequest) -> int:
    return _run(request).seed


@pytest.fixture
def chaos_rng(request: pytest.FixtureRequest) -> random.Random:
    """The scenario's workload randomness (records, symbols, sizes): a stream of the run's seed for this
    scenario alone, so it replays by itself and drawing more here never moves a fault."""
    return rng_for(_run(request).seed, f"workload:{scenario_key(request.node)}")


@pytest.fixture
def chaos_draws(request: pytest.FixtureRequest) -> Draws:
    """The scenario's decisions that shape its faults (a duration, when to inject, a parameter), drawn from
    the run's seed by name and written to the report's fault schedule: `chaos_draws.uniform("pause_s", 2, 4)`."""
    state = scenario_state(request)
    state.draws = Draws(_run(request).seed, f"faults:{scenario_key(request.node)}")
    return state.draws


@pytest.fixture
def chaos_ledger(request: pytest.FixtureRequest) -> Ledger:
    """Every operation the scenario's clients performed; feed it with a producer's outcome observer."""
    state = scenario_state(request)
    state.ledger = Ledger(name=request.node.name)
    return state.ledger


@pytest.fixture
def chaos_check(chaos_ledger: Ledger, request: pytest.FixtureRequest) -> Callable[..., CheckResult]:
    """check(observed, sources=..., ordered=...) -> CheckResult; fails the scenario on lost or duplicated data."""
    state = scenario_state(request)

    def run_check(observed: list[Observed], **options: Any) -> CheckResult:
        result = check(chaos_ledger, observed, name=request.node.name, **options)
        state.checks.append(result)
        assert not (result.data_loss or result.undrained), result.summary()
        return result

    return run_check


# ---- timeout, outcome, reports -----------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    state = _scenario(item)
    if state is None or item.get_closest_marker("chaos") is None:
        return (yield)
    timeout = item.config.stash[RUN].timeout

    def on_alarm(signum: int, frame: object) -> None:
        with tempfile.TemporaryFile("w+") as dump:
            faulthandler.dump_traceback(dump, all_threads=True)
            dump.seek(0)
            state.stack_dump = dump.read()
        state.timed_out = True
        raise ScenarioTimeout(f"{item.name} did not finish within {timeout:g}s (stacks dumped in the report)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return (yield)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
