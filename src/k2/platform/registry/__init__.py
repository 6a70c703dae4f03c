"""A schema registry speaking the Confluent Schema Registry REST API (Avro only), file-backed.

confluent-kafka's SchemaRegistryClient, AvroSerializer and AvroDeserializer work against it
unchanged. Run it with `python -m k2.platform.registry --port 8081 --data-dir DIR`, in-process with
`RegistryServer`, or as a managed child process with `RegistryProcess`.
"""

from __future__ import annotations

from k2.platform.registry.compat import (
    CompatibilityLevel,
    Incompatibility,
    check_compatibility,
    check_pair,
    is_compatible,
)
from k2.platform.registry.process import RegistryProcess
from k2.platform.registry.schema import AvroSchema, parse_avro
from k2.platform.registry.server import RegistryServer
from k2.platform.registry.service import SchemaRegistry
from k2.platform.registry.store import Store

__all__ = [
    "AvroSchema",
    "CompatibilityLevel",
    "Incompatibility",
    "RegistryProcess",
    "RegistryServer",
    "SchemaRegistry",
    "Store",
    "check_compatibility",
    "check_pair",
    "is_compatible",
    "parse_avro",
]
