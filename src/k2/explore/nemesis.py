"""The nemesis: a fault schedule drawn from the run's seed and nothing else.

    schedule = Nemesis(inventory, intensity="med", max_concurrent=2).schedule(seed=7, duration_s=600)

Faults arrive at random (exponential gaps whose mean the intensity sets). Each is a family of kinds drawn
uniformly (lifecycle, partition, network toxics, resources), then a kind of it, then a service that kind can
act on and that is not already under a fault, then a duration and parameters from the kind's declared
ranges. Up to `max_concurrent` overlap; now and then a calm period follows (nothing active, nothing
starting) so recovery is seen as well as failure. Nothing starts in the warm-up (the steady state's
baseline), and everything has ended `settle_s` before the run does.

Every draw comes from one stream derived from the seed (k2.chaos.seeds: `nemesis`), in a fixed order, so
the same seed, inventory and settings give the same schedule, and the schedule records every drawn value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from k2.chaos.seeds import rng_for
from k2.explore.errors import ScheduleError
from k2.explore.kinds import KINDS, Inventory, Kind
from k2.explore.planned import PlannedFault
from k2.explore.schedule import Schedule, Workload

__all__ = ["INTENSITIES", "Intensity", "Nemesis"]

MIN_FAULT_S = 0.5


@dataclass(frozen=True)
class Intensity:
    """How hard the nemesis pushes: mean seconds between fault starts, the range of fault durations, and how
    often (and how long) a calm period follows a fault."""

    name: str
    mean_gap_s: float
    duration_s: tuple[float, float]
    calm_chance: float
    calm_s: tuple[float, float]


INTENSITIES = {
    i.name: i
    for i in (
        Intensity("low", 15.0, (2.0, 8.0), 0.3, (10.0, 30.0)),
        Intensity("med", 6.0, (2.0, 12.0), 0.25, (5.0, 15.0)),
        Intensity("high", 2.5, (1.0, 8.0), 0.15, (3.0, 8.0)),
    )
}


class Nemesis:
    """Draws schedules over `inventory` (what the stack lets a run fault). `kinds`: the kind names allowed
    (None: every kind); `writers`: which process names are the platform's writers (only kinds that may act
    on writer processes are drawn for them)."""

    def __init__(
        self,
        inventory: Inventory,
        *,
        kinds: Sequence[str] | None = None,
        intensity: str = "med",
        max_concurrent: int = 2,
        writers: Sequence[str] = (),
    ) -> None:
        if intensity not in INTENSITIES:
            raise ScheduleError(f"--intensity {intensity!r}: choose one of {', '.join(INTENSITIES)}")
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or not 1 <= max_concurrent <= 16:
            raise ScheduleError(f"--max-concurrent {max_concurrent!r}: give a whole number from 1 to 16")
        unknown = sorted(set(kinds or ()) - set(KINDS))
        if unknown:
            raise ScheduleError(f"--faults: unknown kind(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}")
        self.inventory = inventory
        self.intensity = INTENSITIES[intensity]
        self.max_concurrent = max_concurrent
        self.writers = tuple(writers)
        chosen = [KINDS[name] for name in (kinds if kinds is not None else KINDS)]
        self.kinds: list[Kind] = [k for k in dict.fromkeys(chosen) if k.targets(inventory, self.writers)]
        self.families = sorted({k.family for k in self.kinds})
        if not self.kinds:
            services = sorted({*inventory.process, *inventory.network, *inventory.disk, *inventory.clock})
            raise ScheduleError(
                f"none of the fault kinds {', '.join(k.name for k in chosen)} applies to the services "
                f"{', '.join(services) or '(none)'}; allow more kinds (--faults) or more services (--services)"
            )

    def settings(self, settle_s: float) -> dict[str, object]:
        """How the schedule was drawn, as the report records it."""
        return {
            "intensity": self.intensity.name,
            "max_concurrent": self.max_concurrent,
            "kinds": [k.name for k in self.kinds],
            "inventory": self.inventory.to_dict(),
            "writers": list(self.writers),
            "settle_s": settle_s,
        }

    def schedule(
        self,
        seed: int,
        duration_s: float,
        *,
        warmup_s: float = 3.0,
        settle_s: float | None = None,
        workload: Workload | None = None,
    ) -> Schedule:
        """The schedule of the run with `seed` (see the module docstring)."""
        if settle_s is None:
            settle_s = max(2.0, round(duration_s * 0.1, 1))
        rng = rng_for(seed, "nemesis")
        last_start = duration_s - settle_s - MIN_FAULT_S
        faults: list[PlannedFault] = []
        t = warmup_s
        while True:
            t = round(t + rng.expovariate(1.0 / self.intensity.mean_gap_s), 1)
            if t > last_start:
                break
            active = [f for f in faults if f.at_s <= t < f.end_s]
            if len(active) >= self.max_concurrent:
                t = min(f.end_s for f in active)
                continue
            busy = {f.target for f in active}
            family = rng.choice(self.families)
            kind = rng.choice([k for k in self.kinds if k.family == family])
            targets = [s for s in kind.targets(self.inventory, self.writers) if s not in busy]
            if not targets:
                continue
            target = rng.choice(targets)
            low, high = self.intensity.duration_s
            duration = min(round(rng.uniform(low, high), 1), round(duration_s - settle_s - t, 1))
            params = kind.draw(rng, target, self.inventory)
            faults.append(PlannedFault(len(faults), kind.name, target, t, duration, params))
            if rng.random() < self.intensity.calm_chance:
                quiet_from = max(f.end_s for f in faults)
                t = round(quiet_from + rng.uniform(*self.intensity.calm_s), 1)
        return Schedule(
            seed, duration_s, tuple(faults), warmup_s=warmup_s, workload=workload or Workload(),
            nemesis=self.settings(settle_s), origin="drawn",
        )  # fmt: skip
