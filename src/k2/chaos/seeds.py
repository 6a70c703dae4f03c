"""One seed replays a run: every component draws from its own stream, derived from the run's seed one way.

Why a stream per component (a scenario, the fault proxy, a workload): a component that draws one number more
does not shift what any other component draws, so adding a trade to one scenario never moves the fault
schedule of the next, and a component can be replayed alone. Derive with `rng_for` (a `random.Random`) or
`seed_for` (an integer, for a process that takes a number, e.g. the fault-proxy service); never seed a
component from the run's seed directly, and never use the module-level `random` functions in a run.

`Draws` is a stream that also writes down each named decision it makes: the draws that shape a fault
(its parameters, when it starts) go in the report's fault schedule, so a report says what the seed chose.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, TypeVar

__all__ = ["Draws", "new_seed", "rng_for", "seed_for"]

T = TypeVar("T")


def _check(seed: object, component: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed {seed!r} is not an integer: pass the run's seed (e.g. --chaos-seed 7)")
    if not isinstance(component, str) or not component:
        raise ValueError(f"component {component!r} must be a non-empty name, e.g. 'fault-proxy' or 'scenario:<id>'")


def rng_for(seed: int, component: str) -> random.Random:
    """The random stream of `component` in the run with `seed`: the same pair gives the same stream in every
    run, process and Python version (a str seed is hashed with SHA-512 by `random.Random`)."""
    _check(seed, component)
    return random.Random(f"{seed}:{component}")


def seed_for(seed: int, component: str) -> int:
    """An integer seed (0 <= n < 2**32) for `component`, derived like `rng_for`'s stream."""
    return rng_for(seed, component).getrandbits(32)


def new_seed() -> int:
    """A fresh run seed when the user gave none; every report prints it so the run can be replayed."""
    return random.SystemRandom().randrange(2**31)


class Draws:
    """A component's random stream that records each decision by name (in order), for the report.

    Each name is drawn once, so a report's `decisions` map is unambiguous; numbers are rounded as the
    scenario will use them, so the recorded value is exactly the one that shaped the fault.
    """

    def __init__(self, seed: int, component: str) -> None:
        self.component = component
        self._rng = rng_for(seed, component)
        self.made: dict[str, Any] = {}

    def _record(self, name: str, value: T) -> T:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.component}: name each random decision (got {name!r})")
        if name in self.made:
            raise ValueError(
                f"{self.component}: decision {name!r} was already drawn ({self.made[name]!r}); give each "
                "decision its own name (e.g. 'pause_s_2') so the report can tell them apart"
            )
        self.made[name] = value
        return value

    def uniform(self, name: str, low: float, high: float, *, places: int = 2) -> float:
        """A number in [low, high], rounded to `places` decimals."""
        if not low <= high:
            raise ValueError(f"{self.component}: {name} needs low <= high, got {low} > {high}")
        return self._record(name, round(self._rng.uniform(low, high), places))

    def randint(self, name: str, low: int, high: int) -> int:
        """An integer in [low, high], both included."""
        return self._record(name, self._rng.randint(low, high))

    def choice(self, name: str, options: Sequence[T]) -> T:
        """One of `options` (a sequence with a stable order: sort a set first)."""
        if not options:
            raise ValueError(f"{self.component}: {name} has no options to choose from")
        return self._record(name, options[self._rng.randrange(len(options))])
