"""The one pytest plugin K2 installs (`pytest11` entry point `k2`): the stack for the run, one journaled chaos
session over it and the seed's fault fixtures, composed with the chaos plugin, the verdict plugin and the
platform's fixtures, here and nowhere else.

Why one place: two entry points are registered in an order pytest does not promise, and pluggy calls the
later-registered plugin first, so a plugin that changed another's state at configure time depended on that
order; which errors count as the platform failing gracefully was lost that way (#10). Here the pieces are
listed once, and what joins them is answered through a hook, asked when a scenario is judged, when every
plugin is registered. `-p no:k2` turns all of K2 off. Nothing starts unless a test asks for a chaos fixture.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from k2.chaos.faults import Fault, clock_skew, inject_latency, network_partition, resource_limit, service_failure
from k2.chaos.pytest_plugin import MULTI_BROKERS, RUN, ChaosRun, scenario_state
from k2.chaos.session import ChaosSession
from k2.chaos.shards import MULTI_BROKER_FIXTURE
from k2.platform.errors import PlatformError
from k2.testing import chaos_session as open_session

pytest_plugins = [
    "k2.chaos.pytest_plugin",
    "k2.chaos.pytest_verdict",
    "k2.scenarios.fixtures",
    "k2.explore.pytest_plugin",
]


def pytest_chaos_graceful_errors(config: pytest.Config) -> tuple[type[BaseException], ...]:
    """A typed platform error with a message is the seed's "fails expectedly": FAILED_GRACEFULLY."""
    return (PlatformError,)


def _run(request: pytest.FixtureRequest) -> ChaosRun:
    return request.config.stash[RUN]


# ---- the stack and the session ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def k2_stack(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The stack for the whole run (one start, many scenarios), on the backend --chaos-backend names."""
    from k2.stack import binaries, open_stack
    from k2.stack.backends import is_running

    run = _run(request)
    root = None
    data_dir = run.data_dir
    if data_dir is None:
        root = Path(tempfile.mkdtemp(prefix="k2-chaos-"))
        data_dir = root / "stack"
    brokers = run.brokers
    if brokers is None and not is_running(data_dir):  # a stack reused keeps its own brokers
        wanted = any(MULTI_BROKER_FIXTURE in getattr(item, "fixturenames", ()) for item in request.session.items)
        brokers = MULTI_BROKERS if wanted else 1
    stack = open_stack(data_dir, backend=run.backend, project=run.project, brokers=brokers)
    stack.up()
    run.versions = binaries.versions()
    try:
        yield stack
    finally:
        if not run.keep_stack:
            stack.down(purge=root is not None)
            if root is not None:
                with contextlib.suppress(OSError):  # the temporary root, empty once purged
                    root.rmdir()


@pytest.fixture(scope="session")
def chaos_session(k2_stack: Any, request: pytest.FixtureRequest) -> Iterator[ChaosSession]:
    """One journaled session for the run; faults a killed earlier run left behind are recovered first."""
    with open_session(k2_stack, seed=_run(request).seed, recover=True) as session:
        yield session


@pytest.fixture(autouse=True)
def _chaos_scenario(request: pytest.FixtureRequest) -> Iterator[None]:
    """Around each chaos scenario: heal the stack first, and restore every fault afterwards, whatever happened."""
    if request.node.get_closest_marker("chaos") is None:
        yield
        return
    state = scenario_state(request)  # first: a stack that cannot come up is this scenario's CRASH, not a silent gap
    state.started_at = time.time()
    session: ChaosSession = request.getfixturevalue("chaos_session")
    _heal(_run(request), request.getfixturevalue("k2_stack"), request.node.name)
    state.first_fault, state.started_at = len(session.records), time.time()
    try:
        yield
    finally:
        session.halt()
        journal = session.require_journal()
        if journal.pending():
            journal.recover()
        state.faults = session.records[state.first_fault :]
        state.finished_at = time.time()  # the scenario's fixtures are torn down before this one (set up first)


HEAL_ATTEMPTS = 2  # scenarios in a row whose heal failed before the stack counts as beyond healing


class StackBeyondHealing(RuntimeError):
    """The stack failed to come back before several scenarios in a row; the rest CRASH at once instead."""


def _heal(run: ChaosRun, stack: Any, scenario: str) -> None:
    """Bring back a service an earlier scenario left down (or that crashed), with its data.

    A stack that failed to heal before `HEAL_ATTEMPTS` scenarios in a row (a store that answers 500 on its own
    data, say) is not tried again: each try waits out the services' start timeout, which would cost every
    later scenario a minute for the same CRASH. Those scenarios CRASH at once, naming the first error."""
    failures = run.heal_failures
    if len(failures) >= HEAL_ATTEMPTS:
        names = ", ".join(name for name, _ in failures)
        raise StackBeyondHealing(
            f"not run: the stack failed to come back before {len(failures)} scenarios in a row ({names}), "
            f"first with: {failures[0][1]}. Read the failing service's log (`k2 stack logs SERVICE`), fix or "
            "remove the stack's data dir, and rerun these scenarios."
        )
    try:
        stack.up()
    except Exception as exc:
        failures.append((scenario, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
        raise
    failures.clear()


# ---- the seed's fixtures: each returns a factory with the seed's call shape ---------------------------


@pytest.fixture
def chaos_kafka_failure(chaos_session: ChaosSession) -> Callable[..., Fault]:
    def make(duration_seconds: float | None = 5, mode: str = "stop") -> Fault:
        return service_failure("kafka", duration_seconds, mode, session=chaos_session)

    return make


@pytest.fixture
def chaos_schema_registry_failure(chaos_session: ChaosSession) -> Callable[..., Fault]:
    def make(duration_seconds: float | None = 5, mode: str = "stop") -> Fault:
        return service_failure("schema-registry", duration_seconds, mode, session=chaos_session)

    return make


@pytest.fixture
def chaos_minio_failure(chaos_session: ChaosSession) -> Callable[..., Fault]:
    """The seed's MinIO is the stack's `s3` service."""

    def make(duration_seconds: float | None = 5, mode: str = "pause") -> Fault:
        return service_failure("s3", duration_seconds, mode, session=chaos_session)

    return make


@pytest.fixture
def chaos_network_partition(chaos_session: ChaosSession) -> Callable[..., Fault]:
    def make(duration_seconds: float | None = 10, target: str = "kafka", **options: Any) -> Fault:
        return network_partition(target, duration_seconds, session=chaos_session, **options)

    return make


@pytest.fixture
def chaos_kafka_resource_limit(chaos_session: ChaosSession) -> Callable[..., Fault]:
    def make(cpu_quota: int | None = 50000, mem_limit: str | None = "512m", **options: Any) -> Fault:
        return resource_limit("kafka", cpu_quota, mem_limit, session=chaos_session, **options)

    return make


@pytest.fixture
def chaos_kafka_latency(chaos_session: ChaosSession) -> Callable[..., Fault]:
    def make(latency_ms: int = 100, jitter_ms: int = 20, **options: Any) -> Fault:
        return inject_latency("kafka", latency_ms, jitter_ms, session=chaos_session, **options)

    return make


@pytest.fixture
def chaos_api_failure(chaos_session: ChaosSession) -> Callable[..., Fault]:
    """The query API service (`api`) stopped, paused or killed."""

    def make(duration_seconds: float | None = 5, mode: str = "pause") -> Fault:
        return service_failure("api", duration_seconds, mode, session=chaos_session)

    return make


@pytest.fixture
def chaos_clock_skew(chaos_session: ChaosSession) -> Callable[..., Fault]:
    """clock_skew(target, offset_seconds | jump_to): a service's or a clock domain's wall clock moved."""

    def make(target: str, offset_seconds: float | None = None, jump_to: Any = None, **options: Any) -> Fault:
        return clock_skew(target, offset_seconds, jump_to, session=chaos_session, **options)

    return make
