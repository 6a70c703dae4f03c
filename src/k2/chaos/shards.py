"""Splitting a run's scenarios over several stacks that run at once (`k2 chaos run --parallel N`).

Most of a scenario's time is a fault lasting what it must (an outage past a timeout, a member frozen past its
session): the machine mostly waits. Two stacks, each with its own brokers, stores, fault proxy, journal and
watchdog, run two scenarios at once with nothing shared, so no fault of one can touch the other.

Which shard runs a scenario depends only on the selected scenarios, in collection order: scenarios that need
a multi-broker stack all go to the first shard (only that stack starts extra brokers), the others are dealt
round-robin, which keeps neighbours (a suite's similar scenarios) apart and the shards' lengths close. A
scenario's random choices come from the run's seed and its own name, never from its shard or its
neighbours, so a seed replays the same faults however the run was split.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from k2.chaos.errors import ChaosError

MAX_SHARDS = 4
# Tells a shard's stack which loopback ports it may pick ("I/N", k2.stack.ports): stacks started at the same
# moment would otherwise race for the same free ports between pick and bind.
PORT_SHARE_ENV = "K2_PORT_SHARE"
# the fixture that asks for a stack with several brokers (k2.testing's k2_stack starts them for it)
MULTI_BROKER_FIXTURE = "multi_broker_config"


def parse_shard(text: str) -> tuple[int, int]:
    """`"2/3"` -> (2, 3): the second of three shards."""
    match = re.fullmatch(r"([1-9][0-9]*)/([1-9][0-9]*)", text.strip())
    if match is None or not int(match[1]) <= int(match[2]) <= MAX_SHARDS:
        raise ChaosError(f"shard {text!r}: write it as I/N with 1 <= I <= N <= {MAX_SHARDS}, e.g. 1/2")
    return int(match[1]), int(match[2])


def assign(fixtures: Sequence[Sequence[str]], count: int) -> list[int]:
    """The shard (1..count) of each scenario, given each one's fixture names in collection order."""
    shards: list[int] = []
    dealt = 0
    for names in fixtures:
        if MULTI_BROKER_FIXTURE in names:
            shards.append(1)
            continue
        shards.append(dealt % count + 1)
        dealt += 1
    return shards
