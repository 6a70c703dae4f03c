"""Adding partitions to a topic of the stack's Kafka, including on Tansu 0.6, which lacks the API for it.

Kafka clients grow a topic with CreatePartitions (KIP-195); Tansu 0.6 answers UNSUPPORTED_FEATURE. Its topics
are entries of one JSON document in its store (`clusters/<cluster>/meta.json`, `num_partitions` per topic) that
every broker re-reads, and that the brokers themselves change only with conditional writes. So K2 changes the
count the same way: read the document and its ETag, raise the count, write it back `If-Match` that ETag (a
broker that wrote in between makes it fail with 412, and K2 reads again). Measured on Tansu 0.6: every broker
lists the new partitions within about 5 s, and producers and consumers use them.

The result is verified, not assumed: the call returns only once every broker lists the new count.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from k2.stack.errors import ConfigError, StackError
from k2.stack.services.kafka import CLUSTER_ID, STORE_BUCKET, admin_client, is_broker
from k2.stack.services.seaweed import s3_client

if TYPE_CHECKING:
    from k2.stack.state import StackState

__all__ = ["PartitionsAdded", "add_partitions"]

META_KEY = f"clusters/{CLUSTER_ID}/meta.json"


@dataclass(frozen=True)
class PartitionsAdded:
    """What was done: the count before and after, how (the Kafka API or the store), and when it showed."""

    topic: str
    before: int
    after: int
    via: str  # "kafka-api" | "tansu-store"
    visible_after_s: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def add_partitions(stack: StackState, topic: str, total: int, timeout: float = 30.0) -> PartitionsAdded:
    """Grow `topic` to `total` partitions and wait until every broker of the stack lists them."""
    brokers = [str(svc.advertised) for name, svc in stack.services.items() if is_broker(name)]
    before = _counts(brokers, topic).get(brokers[0], 0)
    if before == 0:
        raise ConfigError(f"topic {topic!r} does not exist on the stack's Kafka; create it first")
    if total <= before:
        raise ConfigError(f"topic {topic!r} has {before} partitions; Kafka can only add: give more than {before}")
    started = time.monotonic()
    via = "kafka-api" if _through_api(brokers[0], topic, total, timeout) else "tansu-store"
    if via == "tansu-store":
        _through_store(stack, topic, total)
    deadline = started + timeout
    while True:
        counts = _counts(brokers, topic)
        if all(count == total for count in counts.values()):
            return PartitionsAdded(topic, before, total, via, round(time.monotonic() - started, 3))
        if time.monotonic() >= deadline:
            raise StackError(
                f"topic {topic!r}: {total} partitions written ({via}) but the brokers list {counts} after "
                f"{timeout:g}s. Remedy: check the brokers' logs (`k2 stack logs kafka`)"
            )
        time.sleep(0.25)


def _counts(brokers: list[str], topic: str) -> dict[str, int]:
    """Partitions of `topic` as each broker lists them (each Tansu broker answers for itself)."""
    counts = {}
    for address in brokers:
        found = admin_client(address, 5.0).list_topics(timeout=5.0).topics.get(topic)  # naming it may auto-create it
        counts[address] = len(found.partitions) if found is not None and found.error is None else 0
    return counts


def _through_api(bootstrap: str, topic: str, total: int, timeout: float) -> bool:
    """CreatePartitions; False when the broker does not implement it (Tansu 0.6)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewPartitions  # type: ignore[attr-defined]  # not re-exported in the stubs

    admin = admin_client(bootstrap, timeout)  # kept referenced: a collected client fails its futures
    future = admin.create_partitions([NewPartitions(topic, total)])[topic]
    try:
        future.result(timeout)
    except KafkaException as exc:
        if exc.args[0].code() in (KafkaError._UNSUPPORTED_FEATURE, KafkaError.UNSUPPORTED_VERSION):
            return False
        raise StackError(f"topic {topic!r}: adding partitions failed: {exc}") from exc
    return True


def _through_store(stack: StackState, topic: str, total: int, attempts: int = 20) -> None:
    """Raise the topic's `num_partitions` in Tansu's meta.json with a conditional write (see the module doc)."""
    from botocore.exceptions import ClientError

    store = stack.services["kafka-store"]
    client = s3_client(
        f"http://{store.advertised}",
        stack.credentials["kafka-store_access_key"],
        stack.credentials["kafka-store_secret_key"],
        10.0,
        3,
    )
    for _ in range(attempts):
        current = client.get_object(Bucket=STORE_BUCKET, Key=META_KEY)
        meta = json.loads(current["Body"].read())
        entry = meta.get("topics", {}).get(topic, {}).get("topic")
        if not isinstance(entry, dict) or not isinstance(entry.get("num_partitions"), int):
            raise StackError(
                f"topic {topic!r} is not in Tansu's {META_KEY} as expected (a Tansu version K2 does not know?); "
                "Remedy: add partitions with a broker that implements CreatePartitions"
            )
        entry["num_partitions"] = max(entry["num_partitions"], total)
        try:
            client.put_object(
                Bucket=STORE_BUCKET, Key=META_KEY, Body=json.dumps(meta).encode(), IfMatch=current["ETag"]
            )
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
                raise
    raise StackError(f"topic {topic!r}: {META_KEY} kept changing under {attempts} conditional writes; retry")
