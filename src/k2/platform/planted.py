"""Planted bugs: test-only switches that make the platform wrong in one known way each, so that K2's
explorer can be shown to find every one of them (and its shrinker to reduce the failing schedule).

Off by default and impossible to turn on by accident. A component arms a bug only when all three agree:

1. its constructor (or the writer's `--planted-bug` option) names the bug exactly;
2. the environment variable `K2_PLANTED_BUGS` lists that name (comma-separated);
3. it runs inside a test or an explore run: pytest's `PYTEST_CURRENT_TEST`, or `K2_EXPLORE_RUN` that
   `k2 chaos explore` sets for the processes it starts.

Anything less raises `PlantedBugRefused` naming what is missing; an armed bug is logged as a warning. No
production path passes a bug name, so a stray environment variable alone changes nothing.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

__all__ = ["BUGS", "CONTEXT_ENV", "ENV", "PlantedBug", "PlantedBugRefused", "arm"]

log = logging.getLogger(__name__)

ENV = "K2_PLANTED_BUGS"
CONTEXT_ENV = "K2_EXPLORE_RUN"
_TEST_ENV = "PYTEST_CURRENT_TEST"


@dataclass(frozen=True)
class PlantedBug:
    name: str
    component: str  # the one component that can arm it
    what: str
    expect: str  # the outcome an exploration should report


BUGS = {
    b.name: b
    for b in (
        PlantedBug("writer-commits-before-iceberg", "writer",
                   "the Iceberg writer commits Kafka offsets as soon as it consumes records, before their Iceberg "
                   "commit (at most once): a batch whose Iceberg commit fails for an outage of the store or the "
                   "catalog is dropped, and a writer killed with rows buffered loses them", "DATA_LOSS (lost)"),
        PlantedBug("producer-retries-without-idempotence", "producer",
                   "the producer sends without idempotence, retrying timed-out batches: a batch the broker had "
                   "already written is written again", "DATA_LOSS (duplicated)"),
        PlantedBug("query-without-timeout", "query",
                   "the query engine runs each query in the caller's thread with no deadline: a frozen catalog or "
                   "store blocks the caller as long as it stays frozen", "HANG"),
    )
}  # fmt: skip


class PlantedBugRefused(RuntimeError):
    """A planted bug was asked for without every switch that must agree (see the module docstring)."""


def arm(name: str | None, component: str) -> str | None:
    """`name` when every switch agrees for `component` (None stays None); otherwise PlantedBugRefused."""
    if name is None:
        return None
    bug = BUGS.get(name)
    if bug is None:
        raise PlantedBugRefused(f"no planted bug {name!r}; the planted bugs are {', '.join(BUGS)}")
    if bug.component != component:
        raise PlantedBugRefused(f"planted bug {name!r} belongs to the {bug.component}, not the {component}")
    listed = [n.strip() for n in os.environ.get(ENV, "").split(",")]
    if name not in listed:
        raise PlantedBugRefused(
            f"planted bug {name!r} asked for, but {ENV} does not list it; planted bugs are for K2's own tests: "
            f"set {ENV}={name} as well, in a test or an explore run, if that is what you mean"
        )
    if not (os.environ.get(_TEST_ENV) or os.environ.get(CONTEXT_ENV)):
        raise PlantedBugRefused(
            f"planted bug {name!r} refused outside a test or an explore run (neither {_TEST_ENV} nor "
            f"{CONTEXT_ENV} is set); planted bugs never run in a pipeline that serves anyone"
        )
    log.warning("PLANTED BUG ARMED in the %s: %s (%s)", component, name, bug.what)
    return name
