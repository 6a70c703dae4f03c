"""A TCP fault proxy with Toxiproxy's toxics and HTTP API, running in-process on loopback.

Faults need no privileges and no tc/netem: put a `Proxy` between a client and a service (Kafka, S3,
PostgreSQL, a schema registry) and add toxics or partitions while traffic flows::

    with Proxy("pg", upstream=("127.0.0.1", 5432), seed=7) as proxy:
        connect_to(proxy.listen_address)
        proxy.add_toxic("latency", latency=100, jitter=20)
        with proxy.partition("blackhole", clients=["consumer"]):
            ...
"""

from __future__ import annotations

from k2.chaos.proxy.classify import Classifier, KafkaClientId
from k2.chaos.proxy.echo import EchoServer
from k2.chaos.proxy.errors import AlreadyExists, NotFound
from k2.chaos.proxy.partition import Partition
from k2.chaos.proxy.proxy import DEFAULT_LABEL, Proxy
from k2.chaos.proxy.server import ProxyServer
from k2.chaos.proxy.toxic import Attribute, Chunk, Stream, Toxic, ToxicContext, register, toxic_types

__all__ = [
    "DEFAULT_LABEL",
    "AlreadyExists",
    "Attribute",
    "Chunk",
    "Classifier",
    "EchoServer",
    "KafkaClientId",
    "NotFound",
    "Partition",
    "Proxy",
    "ProxyServer",
    "Stream",
    "Toxic",
    "ToxicContext",
    "register",
    "toxic_types",
]
