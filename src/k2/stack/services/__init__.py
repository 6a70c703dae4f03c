"""The embedded services by role; the order here is a valid start order."""

from __future__ import annotations

import os

from k2.stack.services.api import QueryApi
from k2.stack.services.base import Layout, Service
from k2.stack.services.fault_proxy import FaultProxy
from k2.stack.services.kafka import Tansu, broker_names
from k2.stack.services.postgres import Postgres
from k2.stack.services.registry import SchemaRegistry
from k2.stack.services.seaweed import SeaweedS3

LAKEHOUSE_BUCKET = "warehouse"
# The broker's store sits on a filesystem of this size (root only) so disk pressure can be injected safely.
STORE_DISK_MB = int(os.environ.get("K2_STORE_DISK_MB", "1024"))


def embedded_services(brokers: int = 1) -> dict[str, Service]:
    """Every service of a stack, with `brokers` Tansu brokers over the one kafka-store."""
    services: list[Service] = [
        FaultProxy(),
        SeaweedS3(
            "kafka-store", bucket="tansu", role="the broker's private log store (SeaweedFS)", disk_mb=STORE_DISK_MB
        ),
        *(Tansu(name) for name in broker_names(brokers)),
        SeaweedS3("s3", bucket=LAKEHOUSE_BUCKET, role="lakehouse object store (SeaweedFS S3)"),
        Postgres(),
        SchemaRegistry(),
        QueryApi(),
    ]
    return {s.name: s for s in services}


__all__ = ["LAKEHOUSE_BUCKET", "Layout", "Service", "embedded_services"]
