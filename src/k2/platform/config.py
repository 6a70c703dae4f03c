"""Where the pipeline's services are and what it calls things: one frozen settings object.

Built from a stack's `Endpoints` (tests, benchmarks) or from the `K2_*` environment variables that
`k2 stack env` prints (the writer process), so every component is pointed at services the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from k2.stack import Endpoints

__all__ = ["ENV_VARS", "PlatformConfig", "Topics", "ensure_topics"]

# the variables `k2 stack env` exports, by PlatformConfig field
ENV_VARS = {
    "kafka_bootstrap": "K2_KAFKA_BOOTSTRAP_SERVERS",
    "schema_registry_url": "K2_SCHEMA_REGISTRY_URL",
    "s3_endpoint": "K2_S3_ENDPOINT",
    "s3_access_key": "K2_S3_ACCESS_KEY_ID",
    "s3_secret_key": "K2_S3_SECRET_ACCESS_KEY",
    "s3_bucket": "K2_S3_BUCKET",
    "postgres_uri": "K2_POSTGRES_URI",
}


@dataclass(frozen=True)
class Topics:
    """Kafka topics of the pipeline; trades and quotes are keyed by symbol so per-symbol order holds."""

    trades: str = "market.trades.v2"
    quotes: str = "market.quotes.v2"
    deadletter: str = "market.deadletter"

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        """Fresh topic names (tests and benchmarks isolate runs on one broker this way)."""
        return cls(f"{prefix}.trades.v2", f"{prefix}.quotes.v2", f"{prefix}.deadletter")


@dataclass(frozen=True)
class PlatformConfig:
    kafka_bootstrap: str
    schema_registry_url: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    s3_bucket: str
    postgres_uri: str
    s3_region: str = "us-east-1"
    topics: Topics = field(default_factory=Topics)
    namespace: str = "market"  # Iceberg namespace: tables are <namespace>.trades_<asset_class>
    catalog_name: str = "k2"
    # bound every call to a dependency, so a dead or frozen service becomes an error, not a hang
    s3_connect_timeout: float = 5.0
    s3_request_timeout: float = 15.0
    catalog_connect_timeout: int = 5
    registry_timeout: float = 5.0

    @classmethod
    def from_endpoints(cls, endpoints: Endpoints, **overrides: Any) -> PlatformConfig:
        values = {name: getattr(endpoints, name) for name in ENV_VARS}
        return cls(**{**values, **overrides})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> PlatformConfig:
        """Read the `k2 stack env` variables; a missing one is named in the error with the fix."""
        env = os.environ if env is None else env
        missing = [var for name, var in ENV_VARS.items() if name not in overrides and not env.get(var)]
        if missing:
            raise KeyError(
                f"environment variables not set: {', '.join(missing)}. "
                "Remedy: `eval $(k2 stack env --data-dir DIR)` or pass the values as options"
            )
        values: dict[str, Any] = {name: env[var] for name, var in ENV_VARS.items() if name not in overrides}
        if env.get("K2_TOPIC_PREFIX") and "topics" not in overrides:
            values["topics"] = Topics.with_prefix(env["K2_TOPIC_PREFIX"])
        if env.get("K2_ICEBERG_NAMESPACE") and "namespace" not in overrides:
            values["namespace"] = env["K2_ICEBERG_NAMESPACE"]
        return cls(**{**values, **overrides})

    def with_(self, **changes: Any) -> PlatformConfig:
        return replace(self, **changes)

    def as_env(self) -> dict[str, str]:
        """The variables a child process (the writer CLI) needs to see the same services."""
        env = {var: str(getattr(self, name)) for name, var in ENV_VARS.items()}
        env["K2_ICEBERG_NAMESPACE"] = self.namespace
        prefix = self.topics.trades.removesuffix(".trades.v2")
        if Topics.with_prefix(prefix) == self.topics and self.topics != Topics():
            env["K2_TOPIC_PREFIX"] = prefix
        return env

    @property
    def warehouse(self) -> str:
        return f"s3://{self.s3_bucket}/warehouse"

    def sqlalchemy_uri(self) -> str:
        """The catalog URI for SQLAlchemy with psycopg 3, with a connect timeout (libpq's default is forever)."""
        parts = urlsplit(self.postgres_uri)
        scheme = "postgresql+psycopg" if parts.scheme in ("postgres", "postgresql") else parts.scheme
        query = dict(parse_qsl(parts.query))
        query.setdefault("connect_timeout", str(self.catalog_connect_timeout))
        return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))

    def catalog_properties(self) -> dict[str, str]:
        """Properties for pyiceberg's SqlCatalog with the S3 FileIO (path-style addressing)."""
        return {
            "uri": self.sqlalchemy_uri(),
            "warehouse": self.warehouse,
            "pool_pre_ping": "true",
            "s3.endpoint": self.s3_endpoint,
            "s3.access-key-id": self.s3_access_key,
            "s3.secret-access-key": self.s3_secret_key,
            "s3.region": self.s3_region,
            "s3.force-virtual-addressing": "false",
            "s3.connect-timeout": str(self.s3_connect_timeout),
            "s3.request-timeout": str(self.s3_request_timeout),
        }

    def registry_conf(self) -> dict[str, Any]:
        """SchemaRegistryClient settings: short timeout and one retry, so an outage surfaces quickly."""
        return {"url": self.schema_registry_url, "timeout": self.registry_timeout, "max.retries": 1}

    def kafka_base(self) -> dict[str, Any]:
        # reconnect within a second of a broker coming back (librdkafka's default backs off up to 10 s)
        return {"bootstrap.servers": self.kafka_bootstrap, "reconnect.backoff.max.ms": 1000}


def ensure_topics(config: PlatformConfig, *, partitions: int = 3, timeout: float = 30.0) -> None:
    """Create the pipeline's topics if missing (idempotent). Data topics get `partitions`, dead letters 1."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    from k2.platform.errors import KafkaUnavailable

    admin = AdminClient(config.kafka_base())
    wanted = {config.topics.trades: partitions, config.topics.quotes: partitions, config.topics.deadletter: 1}
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise KafkaUnavailable(f"cannot list topics at {config.kafka_bootstrap}: {exc}") from exc
    missing = [NewTopic(t, num_partitions=n, replication_factor=1) for t, n in wanted.items() if t not in existing]
    if not missing:
        return
    for topic, future in admin.create_topics(missing, operation_timeout=timeout, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaUnavailable(f"cannot create topic {topic} at {config.kafka_bootstrap}: {exc}") from exc
