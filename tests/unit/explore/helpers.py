"""Inventories and schedules for the explore unit tests (no services)."""

from __future__ import annotations

from k2.explore.kinds import Inventory
from k2.explore.planned import PlannedFault
from k2.explore.schedule import Schedule

WRITERS = ("writer-1", "writer-2")
INVENTORY = Inventory(
    process=("kafka", "kafka-store", "s3", "postgres", "schema-registry", *WRITERS),
    network=("kafka", "kafka-store", "s3", "postgres", "schema-registry"),
    disk=("kafka",),
    clock=("postgres", "schema-registry"),
    client_labels={"kafka": ("producer", "writer")},
)


def kill(index: int, target: str, at_s: float, duration_s: float) -> PlannedFault:
    return PlannedFault(index, "service_failure", target, at_s, duration_s, {"mode": "kill"})


def schedule_of(*faults: PlannedFault, duration_s: float = 60.0, seed: int = 1) -> Schedule:
    return Schedule(seed, duration_s, tuple(faults), nemesis={"settle_s": 2.0})
