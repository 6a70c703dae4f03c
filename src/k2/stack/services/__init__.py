"""The embedded services by role; the order here is a valid start order."""

from __future__ import annotations

from k2.stack.services.base import Layout, Service
from k2.stack.services.fault_proxy import FaultProxy
from k2.stack.services.kafka import Tansu
from k2.stack.services.postgres import Postgres
from k2.stack.services.registry import SchemaRegistry
from k2.stack.services.seaweed import SeaweedS3

LAKEHOUSE_BUCKET = "warehouse"


def embedded_services() -> dict[str, Service]:
    services: list[Service] = [
        FaultProxy(),
        SeaweedS3("kafka-store", bucket="tansu", role="the broker's private log store (SeaweedFS)"),
        Tansu(),
        SeaweedS3("s3", bucket=LAKEHOUSE_BUCKET, role="lakehouse object store (SeaweedFS S3)"),
        Postgres(),
        SchemaRegistry(),
    ]
    return {s.name: s for s in services}


__all__ = ["LAKEHOUSE_BUCKET", "Layout", "Service", "embedded_services"]
