"""Where clients connect: the advertised addresses and credentials, as values and as env vars."""

from __future__ import annotations

from dataclasses import dataclass

from k2.stack.services import LAKEHOUSE_BUCKET
from k2.stack.services.kafka import is_broker
from k2.stack.services.postgres import Postgres
from k2.stack.state import StackState


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str  # every broker, comma-separated (one unless the stack runs with --brokers N)
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    s3_bucket: str
    postgres_uri: str
    schema_registry_url: str
    fault_proxy_url: str
    data_dir: str
    api_url: str = ""  # the query API (empty for a stack started before it existed)
    kafka_brokers: tuple[str, ...] = ()  # each broker's address, `kafka` first

    @property
    def first_broker(self) -> str:
        """The `kafka` broker alone: clients bootstrapped here never talk to the others (Tansu brokers
        advertise only themselves)."""
        return self.kafka_brokers[0] if self.kafka_brokers else self.kafka_bootstrap.split(",")[0]

    def as_env(self) -> dict[str, str]:
        return {
            "K2_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "K2_S3_ENDPOINT": self.s3_endpoint,
            "K2_S3_ACCESS_KEY_ID": self.s3_access_key,
            "K2_S3_SECRET_ACCESS_KEY": self.s3_secret_key,
            "K2_S3_BUCKET": self.s3_bucket,
            "K2_POSTGRES_URI": self.postgres_uri,
            "K2_SCHEMA_REGISTRY_URL": self.schema_registry_url,
            "K2_FAULT_PROXY_URL": self.fault_proxy_url,
            "K2_DATA_DIR": self.data_dir,
            "K2_API_URL": self.api_url,
        }


def lakehouse_env(stack: StackState) -> dict[str, str]:
    """What a reader of the lakehouse needs (S3 and the catalog, as clients reach them), as `k2 stack env`
    names it; for services planned after `s3` and `postgres`."""
    creds = stack.credentials
    return {
        "K2_S3_ENDPOINT": f"http://{stack.services['s3'].advertised}",
        "K2_S3_ACCESS_KEY_ID": creds["s3_access_key"],
        "K2_S3_SECRET_ACCESS_KEY": creds["s3_secret_key"],
        "K2_S3_BUCKET": LAKEHOUSE_BUCKET,
        "K2_POSTGRES_URI": Postgres.uri(stack, stack.services["postgres"]),
    }


def endpoints_of(stack: StackState) -> Endpoints:
    creds = stack.credentials
    brokers = tuple(str(svc.advertised) for name, svc in stack.services.items() if is_broker(name))
    return Endpoints(
        kafka_bootstrap=",".join(brokers),
        s3_endpoint=f"http://{stack.services['s3'].advertised}",
        s3_access_key=creds["s3_access_key"],
        s3_secret_key=creds["s3_secret_key"],
        s3_bucket=LAKEHOUSE_BUCKET,
        postgres_uri=Postgres.uri(stack, stack.services["postgres"]),
        schema_registry_url=f"http://{stack.services['schema-registry'].advertised}",
        fault_proxy_url=f"http://{stack.services['fault-proxy'].advertised}",
        data_dir=stack.data_dir,
        api_url=f"http://{stack.services['api'].advertised}" if "api" in stack.services else "",
        kafka_brokers=brokers,
    )
