"""pytest fixtures joining the platform to the chaos framework: the seed's `producer_v2`,
`sample_trade`, a consumer, and independent readers of the sinks for the checker."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import pytest

from k2.chaos.checker import Observed, wait_drained
from k2.chaos.ledger import Ledger, OpState
from k2.platform.config import PlatformConfig, Topics, ensure_topics
from k2.scenarios.records import TradeFactory
from k2.scenarios.sinks import IcebergReader, KafkaTopicReader

# Consumer groups in scenarios (the Iceberg writer, the writer group): Tansu answers a join after about half the
# session timeout (measured: 3 s with the consumer's 6 s default, 1.5 s with 3 s), and a member frozen or killed
# is evicted after it. The scenarios check what the group does, not how long it takes, so they use 3 s.
SESSION_TIMEOUT_MS = 3000


@pytest.fixture
def platform_config(k2_stack: Any) -> PlatformConfig:
    """Own topics and Iceberg namespace per scenario, so scenarios on one stack never see each other's data.
    Clients reach the `kafka` broker only (on a stack with more, the others serve the multi-broker scenarios)."""
    tag = uuid.uuid4().hex[:8]
    endpoints = k2_stack.endpoints()
    config = PlatformConfig.from_endpoints(endpoints, topics=Topics.with_prefix(f"chaos{tag}"),
                                           namespace=f"chaos{tag}", kafka_bootstrap=endpoints.first_broker)  # fmt: skip
    ensure_topics(config)
    return config


@pytest.fixture
def multi_broker_config(platform_config: PlatformConfig, k2_stack: Any) -> PlatformConfig:
    """The scenario's config with every broker to bootstrap from (a run that selects a scenario using this
    fixture starts its stack with 3 brokers; see --chaos-brokers)."""
    brokers = k2_stack.endpoints().kafka_brokers
    if len(brokers) < 2:
        pytest.skip(
            f"the stack runs {len(brokers)} Kafka broker; multi-broker scenarios need a stack started with "
            "`k2 stack up --brokers 3` (or a --chaos-data-dir with no stack running: the run starts one)"
        )
    return platform_config.with_(kafka_bootstrap=",".join(brokers))


@pytest.fixture
def trade_factory(chaos_rng: Any) -> TradeFactory:
    """Trades drawn from the scenario's seeded workload stream, ids included: a replay sends the same trades."""
    return TradeFactory(chaos_rng, run_tag=f"{chaos_rng.getrandbits(24):06x}")


@pytest.fixture
def sample_trade(trade_factory: TradeFactory) -> dict[str, Any]:
    """One valid trade (the seed's fixture); `trade_factory` makes more."""
    return trade_factory("BTC-USD")


class LedgeredProducer:
    """The platform's producer with every record entered in the ledger BEFORE it is sent, so a record
    that never gets an outcome (silently dropped) shows up as pending instead of going unnoticed."""

    def __init__(self, producer: Any, ledger: Ledger) -> None:
        self._producer, self._ledger = producer, ledger

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def produce_trade(self, trade: dict[str, Any]) -> str:
        return self._send(self._producer.produce_trade, trade, "trade_id")

    def produce_quote(self, quote: dict[str, Any]) -> str:
        return self._send(self._producer.produce_quote, quote, "quote_id")

    def _send(self, produce: Callable[[dict[str, Any]], str], record: dict[str, Any], id_field: str) -> str:
        key = record.get(id_field) if isinstance(record, dict) else None
        if not isinstance(key, str):  # never sendable: the producer reports it rejected, without a key
            return produce(record)
        op = self._ledger.get(key)
        if op is None or op.state is OpState.FAILED:  # new, or a resend of a failed one
            self._ledger.invoke(key, group=record.get("symbol"), seq=record.get("sequence_number"))
        return produce(record)


@pytest.fixture
def make_producer(platform_config: PlatformConfig, chaos_ledger: Ledger) -> Iterator[Callable[..., Any]]:
    """Producers whose every outcome goes to the scenario's ledger; closed (and accounted for) at the end."""
    from k2.platform.producer import MarketDataProducer

    made: list[Any] = []

    def make(**options: Any) -> Any:
        overrides = {"client.id": "producer", **options.pop("kafka_overrides", {})}
        config = options.pop("config", platform_config)
        producer = MarketDataProducer(config, observer=chaos_ledger.observe, kafka_overrides=overrides, **options)
        made.append(producer)
        return LedgeredProducer(producer, chaos_ledger)

    yield make
    for producer in made:
        producer.close(timeout=30)


@pytest.fixture
def producer_v2(make_producer: Callable[..., Any]) -> Any:
    """The seed's producer: idempotent, acks=all, Avro through the registry, outcomes in the ledger."""
    return make_producer()


@pytest.fixture
def trades_reader(platform_config: PlatformConfig) -> Iterator[KafkaTopicReader]:
    reader = KafkaTopicReader(platform_config, platform_config.topics.trades)
    yield reader
    reader.close()


@pytest.fixture
def iceberg_reader(platform_config: PlatformConfig) -> IcebergReader:
    return IcebergReader(platform_config)


@pytest.fixture
def iceberg_writer(platform_config: PlatformConfig) -> Iterator[Any]:
    """The platform's exactly-once Iceberg writer, consuming the scenario's topics in a thread (one consumer group
    member, with the scenarios' session timeout)."""
    from k2.platform.writer import IcebergWriter

    group = {"client.id": "writer", "session.timeout.ms": SESSION_TIMEOUT_MS,
             "heartbeat.interval.ms": SESSION_TIMEOUT_MS // 6}  # fmt: skip
    writer = IcebergWriter(platform_config, group_id=f"writer-{uuid.uuid4().hex[:6]}", batch_max_seconds=0.5,
                           retry_max=1.0, consumer_overrides=group)  # fmt: skip
    writer.start()
    yield writer
    writer.stop(timeout=60)


@pytest.fixture
def lake_writer(platform_config: PlatformConfig) -> Iterator[Any]:
    """The same writer on every partition of the scenario's topics without a consumer group, for scenarios
    that fault something other than Kafka: no group join or leave (~3 s each on this broker)."""
    from k2.platform.writer import IcebergWriter

    writer = IcebergWriter(platform_config, group_id=f"writer-{platform_config.namespace}", batch_max_seconds=0.3,
                           retry_max=1.0, assign_all=True, consumer_overrides={"client.id": "writer"})  # fmt: skip
    writer.start()
    yield writer
    writer.stop(timeout=60)


@pytest.fixture
def writer_group(platform_config: PlatformConfig, chaos_session: Any) -> Iterator[Callable[..., Any]]:
    """`writer_group(count, **options)`: the Iceberg writer as `count` processes of one consumer group, each a
    target of the chaos session by name (writer-1, writer-2, ...); stopped, and forgotten, at the end."""
    from k2.scenarios.writer_group import WriterGroup

    made: list[WriterGroup] = []

    def make(count: int = 2, **options: Any) -> WriterGroup:
        root = Path(tempfile.mkdtemp(prefix="k2-writers-"))
        options = {"session_timeout_ms": SESSION_TIMEOUT_MS, "batch_seconds": 0.5, **options}
        group = WriterGroup(platform_config, f"writers-{uuid.uuid4().hex[:6]}", root=root, **options)
        made.append(group)
        group.declare(chaos_session)
        group.start(count)
        return group

    yield make
    chaos_session.halt()  # a paused member must be thawed before it can stop
    for group in made:
        group.close()
        group.undeclare()
        shutil.rmtree(group.root, ignore_errors=True)


@pytest.fixture
def query_engine(platform_config: PlatformConfig) -> Iterator[Any]:
    from k2.platform.query import QueryEngine

    engine = QueryEngine(platform_config, timeout=20.0)
    yield engine
    engine.close()


@pytest.fixture
def verify_no_loss(
    chaos_ledger: Ledger, trades_reader: KafkaTopicReader, iceberg_reader: IcebergReader,
    chaos_check: Callable[..., Any],
) -> Callable[..., Any]:  # fmt: skip
    """Wait (bounded) until every acknowledged trade is on the topic (and in Iceberg, with iceberg=True),
    then run the checker on what independent readers found (with iceberg=True, also audit the tables'
    offset bookkeeping: breaks are anomalies beside the verdict)."""

    def verify(
        timeout: float = 60.0, *, iceberg: bool = False, ordered: bool = True, ignore: Collection[str] = ()
    ) -> Any:
        """`ordered=False` where a key may change partition (partitions added): Kafka orders per partition only.
        `ignore`: keys of records the scenario sent outside the ledger and accounts for itself (e.g. a rogue
        producer's, checked in the dead-letter topic)."""
        sources = [trades_reader.source] + ([iceberg_reader.source] if iceberg else [])

        def read() -> list[Observed]:
            found = trades_reader.read() + (iceberg_reader.read() if iceberg else [])
            return [o for o in found if o.key not in ignore] if ignore else found

        observed: list[Observed] = wait_drained(read, chaos_ledger.acked_keys(), timeout, sources=sources)
        return chaos_check(observed, sources=sources, ordered=[trades_reader.source] if ordered else [],
                           ack_positions=[trades_reader.source], unreadable=trades_reader.unreadable,
                           anomalies=iceberg_reader.audit() if iceberg else [],
                           undrained={iceberg_reader.source: unclaimed(observed)} if iceberg else None)  # fmt: skip

    def unclaimed(observed: list[Observed]) -> set[str]:
        """Trades on the topic, not in Iceberg, at or above the offsets the writer recorded: still upstream and
        claimed by nobody, so missing from Iceberg they are a stalled writer, not a lost record."""
        in_lake = {o.key for o in observed if o.source == iceberg_reader.source}
        on_topic = {o.key: o.position for o in observed if o.source == trades_reader.source and o.position}
        waiting = {key: pos for key, pos in on_topic.items() if key not in in_lake}
        if not waiting:
            return set()
        claimed = iceberg_reader.claimed(trades_reader.topic)
        return {key for key, (partition, offset) in waiting.items() if offset >= claimed.get(partition, 0)}

    return verify
