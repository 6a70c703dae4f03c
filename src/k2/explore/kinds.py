"""The fault kinds an exploration draws from: the fault catalogue (k2.chaos.faults.catalogue), seen by the
nemesis.

The catalogue says what each kind is, its parameters with their valid and explore ranges, and the capability
each variant needs. This module adds only what exploring needs on top: which side of a service a kind acts on
(its process, its fault-proxy route, its disk, its clock), the family the nemesis picks first, and two choices
the catalogue leaves open — a partition or toxic cuts off one named client a third of the time (partial
partitions), and a resource limit caps memory only a third of the time (an OOM-killed store stalls the whole
run). A drawn fault is kept as the catalogue's own parameter names and values, so it rebuilds with
`Kind.build` and replays exactly.

    params = kind("latency").draw(rng, "kafka", inventory)     # {"stream": ..., "latency": 380, ...}
    spec = kind("latency").build("kafka", 2.5, params)         # a validated FaultSpec
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from k2.chaos.errors import InvalidFault
from k2.chaos.faults.catalogue import CATALOGUE
from k2.chaos.faults.catalogue import Kind as CatalogueKind
from k2.chaos.faults.spec import FaultSpec
from k2.chaos.targets import Capability

__all__ = ["FACETS", "KINDS", "WRITER_KINDS", "Inventory", "Kind", "kind"]

FACETS = ("process", "network", "disk", "clock")
_FACET = {
    Capability.LIFECYCLE: "process",
    Capability.FREEZE: "process",
    Capability.LIMITS: "process",
    Capability.NETWORK: "network",
    Capability.DISK: "disk",
    Capability.CLOCK: "clock",
}
# The family of each kind that is not a toxic (the toxics are the "network" family).
_FAMILY = {
    "service_failure": "lifecycle",
    "network_partition": "partition",
    "resource_limit": "resources",
    "disk_fill": "resources",
    "clock_skew": "clock",
}
DRAW_TRIES = 100


@dataclass(frozen=True)
class Inventory:
    """What a run may fault, per facet: services whose process can be stopped or limited (the platform's
    writer processes among them), services reached through the fault proxy, filesystems that can be filled,
    clocks that can be moved, and the client labels a partial partition can cut off alone, per service."""

    process: tuple[str, ...] = ()
    network: tuple[str, ...] = ()
    disk: tuple[str, ...] = ()
    clock: tuple[str, ...] = ()
    client_labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def services(self, facet: str) -> tuple[str, ...]:
        return {"process": self.process, "network": self.network, "disk": self.disk, "clock": self.clock}[facet]

    def narrowed(self, services: Sequence[str] | None) -> Inventory:
        """Only `services` (None: all); a name in none of the facets is refused, naming those there are."""
        if services is None:
            return self
        known = set(self.process) | set(self.network) | set(self.disk) | set(self.clock)
        unknown = sorted(set(services) - known)
        if unknown:
            raise InvalidFault(
                f"--services: {', '.join(unknown)} not in this stack; choose from {', '.join(sorted(known))}"
            )
        keep = set(services)

        def only(names: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(s for s in names if s in keep)

        return Inventory(
            only(self.process),
            only(self.network),
            only(self.disk),
            only(self.clock),
            {s: labels for s, labels in self.client_labels.items() if s in keep},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **{f: list(self.services(f)) for f in FACETS},
            "client_labels": {k: list(v) for k, v in self.client_labels.items()},
        }


def _one_client(rng: random.Random, values: dict[str, Any], target: str, inv: Inventory) -> None:
    labels = inv.client_labels.get(target, ())
    values["clients"] = [rng.choice(labels)] if labels and rng.random() < 1 / 3 else None


def _memory_sometimes(rng: random.Random, values: dict[str, Any], target: str, inv: Inventory) -> None:
    if rng.random() < 2 / 3:
        values["mem_limit"] = None


Adjust = Callable[[random.Random, dict[str, Any], str, Inventory], None]


@dataclass(frozen=True, eq=False)
class Kind:
    """A catalogue kind as the nemesis uses it (one object per kind: compared and hashed by identity)."""

    name: str
    family: str  # lifecycle | partition | network | resources | clock: the nemesis picks a family first
    facet: str
    entry: CatalogueKind = field(repr=False)
    adjust: Adjust | None = field(repr=False, default=None)

    @property
    def on_writers(self) -> bool:
        """Process faults act on the platform's writer processes as on any service."""
        return self.facet == "process"

    def draw(self, rng: random.Random, target: str, inventory: Inventory) -> dict[str, Any]:
        """Parameters for `target`, each from the catalogue's explore range (then explore's own choices);
        combinations the catalogue refuses are drawn again."""
        for _ in range(DRAW_TRIES):
            values = {p.name: p.draw(rng) for p in self.entry.params}
            if self.adjust is not None:
                self.adjust(rng, values, target, inventory)
            try:
                self.build(target, 1.0, values)
            except InvalidFault:
                continue
            return values
        raise InvalidFault(f"{self.name}: no valid parameters drawn in {DRAW_TRIES} tries; check its explore ranges")

    def build(self, target: str, duration_s: float, params: Mapping[str, Any]) -> FaultSpec[Any]:
        """The validated spec (InvalidFault names a bad or unknown parameter); nothing is touched."""
        return self.entry.build(target, duration_s, **dict(params))

    def targets(self, inventory: Inventory, writers: Sequence[str] = ()) -> tuple[str, ...]:
        """The services of `inventory` this kind can act on (writer processes only for process faults)."""
        found = inventory.services(self.facet)
        return found if self.on_writers else tuple(s for s in found if s not in writers)


def _explore_kind(entry: CatalogueKind) -> Kind:
    facets = {_FACET[c] for c in entry.capabilities.values()}
    if len(facets) != 1:
        raise AssertionError(f"{entry.name}: variants on different sides of a service ({facets})")
    adjust: Adjust | None = None
    if any(p.name == "clients" for p in entry.params):
        adjust = _one_client
    if entry.name == "resource_limit":
        adjust = _memory_sometimes
    return Kind(entry.name, _FAMILY.get(entry.name, "network"), facets.pop(), entry, adjust)


KINDS: dict[str, Kind] = {name: _explore_kind(entry) for name, entry in CATALOGUE.items()}

# What can be done to the platform's own writer processes.
WRITER_KINDS = tuple(k.name for k in KINDS.values() if k.on_writers)


def kind(name: str) -> Kind:
    """The kind `name`, or InvalidFault listing the known ones."""
    found = KINDS.get(name)
    if found is None:
        raise InvalidFault(f"unknown fault kind {name!r}; explore draws from: {', '.join(KINDS)}")
    return found
