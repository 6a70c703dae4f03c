"""What a stack lets an exploration fault, decided from the stack's kind alone (not from a running one),
so `--dry-run` shows exactly the schedule a run will draw and the same seed gives the same schedule on
every machine of the same kind. The schedule records the inventory it was drawn from.

Only the services the workload depends on are drawn (the fault proxy is K2's own route for every network fault;
the query API is not on the workload's path). The broker's store has a size-limited disk only when the stack
can mount one (root, `K2_STORE_DISK_MB` > 0); clocks move only for the services started with libfaketime.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from k2.explore.kinds import Inventory

__all__ = ["KAFKA_CLIENT_LABELS", "WORKLOAD_SERVICES", "stack_inventory"]

# The Kafka clients of the workload a partial partition may cut off alone (labels the fault proxy knows).
KAFKA_CLIENT_LABELS = ("producer", "writer")
WORKLOAD_SERVICES = ("kafka-store", "kafka", "s3", "postgres", "schema-registry")


def stack_inventory(writer_names: Sequence[str] = ()) -> Inventory:
    """The embedded stack's services (either backend) plus the workload's writer processes."""
    from k2.stack.clocks import ARMED
    from k2.stack.services import STORE_DISK_MB, embedded_services

    services = tuple(name for name in embedded_services() if name in WORKLOAD_SERVICES)
    disk = ("kafka",) if os.geteuid() == 0 and STORE_DISK_MB > 0 else ()
    clock = tuple(name for name in services if name in ARMED)
    return Inventory(process=(*services, *writer_names), network=services, disk=disk, clock=clock,
                     client_labels={"kafka": KAFKA_CLIENT_LABELS})  # fmt: skip
