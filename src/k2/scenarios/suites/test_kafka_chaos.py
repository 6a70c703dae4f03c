"""The seed's Kafka chaos scenarios, on the real stack: broker failures, partitions, resource pressure,
latency, concurrent failures and consumer resilience. Each follows the seed's pattern (baseline, inject,
behaviour under failure, recovery), says in its docstring what should happen, asserts recovery, and runs
the data-loss checker on an independent read of the topic. A scenario marked
`chaos_expect("failed_gracefully")` ends with the platform's typed error by design; what must hold after
the restore is checked in its `finally:`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer

from k2.platform.errors import PlatformError
from k2.scenarios.timing import within

pytestmark = [pytest.mark.chaos, pytest.mark.chaos_kafka]


def produce(producer: Any, factory: Any, n: int, symbol: str | None = None) -> list[str]:
    return [producer.produce_trade(factory(symbol)) for _ in range(n)]


def acked(ledger: Any) -> int:
    return ledger.counts().get("acknowledged", 0)


class TestKafkaBrokerFailure:
    def test_producer_survives_brief_kafka_outage(
        self, producer_v2: Any, trade_factory: Any, chaos_kafka_failure: Any, chaos_draws: Any, chaos_ledger: Any,
        verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """Broker frozen 2-4 s (pause; the seed draws how long, and after how many trades): the producer
        buffers, nothing is acknowledged while frozen, everything is delivered exactly once after resume."""
        baseline = chaos_draws.randint("baseline_trades", 50, 150)
        pause_s = chaos_draws.uniform("pause_s", 2.0, 4.0)
        produce(producer_v2, trade_factory, baseline)
        assert producer_v2.flush(30) == 0
        with chaos_kafka_failure(duration_seconds=pause_s, mode="pause"):
            produce(producer_v2, trade_factory, 300)
            producer_v2.poll(0.5)
            assert acked(chaos_ledger) == baseline  # buffered, not lost
        produce(producer_v2, trade_factory, 100)
        assert producer_v2.flush(60) == 0
        verify_no_loss()
        assert acked(chaos_ledger) == baseline + 400

    def test_producer_reconnects_after_graceful_restart(
        self, producer_v2: Any, trade_factory: Any, chaos_kafka_failure: Any, chaos_ledger: Any, verify_no_loss: Any
    ) -> None:
        """Broker stopped gracefully and started again with the same data: the producer reconnects on its
        own and delivers what it buffered."""
        produce(producer_v2, trade_factory, 100)
        assert producer_v2.flush(30) == 0
        with chaos_kafka_failure(duration_seconds=2, mode="stop"):
            produce(producer_v2, trade_factory, 200)
        assert producer_v2.flush(60) == 0
        verify_no_loss()
        assert acked(chaos_ledger) == 300

    def test_extended_outage_times_out_with_typed_outcomes(
        self, make_producer: Any, trade_factory: Any, chaos_kafka_failure: Any, chaos_ledger: Any, verify_no_loss: Any
    ) -> None:
        """Broker down longer than the producer's delivery timeout: records in flight time out and are
        reported failed or unknown (never silently dropped, never acknowledged); production resumes after."""
        producer = make_producer(delivery_timeout_ms=3000)
        produce(producer, trade_factory, 50)
        assert producer.flush(30) == 0
        with chaos_kafka_failure(duration_seconds=6, mode="stop"):
            produce(producer, trade_factory, 100)
            deadline = time.monotonic() + 5.5
            while not timed_out(chaos_ledger) and time.monotonic() < deadline:
                producer.poll(0.2)
            assert timed_out(chaos_ledger) > 0, chaos_ledger.counts()
        after = [trade_factory() for _ in range(50)]
        for trade in after:
            producer.produce_trade(trade)
        assert producer.flush(60) == 0
        counts = chaos_ledger.counts()
        assert counts["pending"] == 0, counts  # every record sent has an outcome
        # A producer fenced by the outage fails its next records (typed, reported): the caller resends
        # what its ledger says failed, as the producer's error tells it to; then all must get through.
        for _ in range(3):
            failed = [t for t in after if chaos_ledger.get(t["trade_id"]).state.value == "failed"]
            for trade in failed:
                producer.produce_trade(trade)
            assert producer.flush(60) == 0
        states = [(chaos_ledger.get(t["trade_id"]).state.value, chaos_ledger.get(t["trade_id"]).error) for t in after]
        assert all(s == "acknowledged" for s, _ in states), states
        verify_no_loss()

    @pytest.mark.chaos_expect("failed_gracefully")
    def test_full_buffer_during_outage_raises_backpressure(
        self, make_producer: Any, trade_factory: Any, chaos_kafka_failure: Any, verify_no_loss: Any
    ) -> None:
        """Broker frozen while a producer with a bounded buffer (500 records, 2 s block timeout) keeps sending:
        once the buffer is full, produce_trade raises BackpressureError, a typed error saying Kafka is not
        acknowledging, within its block timeout (no hang, no silent drop), which ends the scenario: expected
        outcome FAILED GRACEFULLY. After the resume everything the producer accepted is delivered exactly once."""
        producer = make_producer(max_buffered_messages=500, block_timeout=2.0)
        produce(producer, trade_factory, 100)
        assert producer.flush(30) == 0
        try:
            with chaos_kafka_failure(duration_seconds=None, mode="pause"), within(10, "filling the buffer"):
                produce(producer, trade_factory, 1000)  # the 501st record finds the buffer full
        finally:  # the broker runs again (the error left the block): what was accepted must all arrive
            assert producer.flush(60) == 0
            verify_no_loss()


def timed_out(ledger: Any) -> int:
    counts = ledger.counts()
    return counts.get("failed", 0) + counts.get("unknown", 0)


class TestKafkaNetworkPartition:
    def test_full_partition_makes_broker_unreachable(
        self, producer_v2: Any, trade_factory: Any, chaos_network_partition: Any, platform_config: Any,
        chaos_ledger: Any, verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """Broker unreachable from every client for 4 s: a consumer's poll returns within its timeout
        (no hang), the producer buffers, and everything is delivered after the partition heals."""
        produce(producer_v2, trade_factory, 100)
        assert producer_v2.flush(30) == 0
        consumer = Consumer({**platform_config.kafka_base(), "group.id": f"g-{uuid.uuid4().hex[:6]}",
                             "client.id": "consumer", "session.timeout.ms": 6000})  # fmt: skip
        try:
            with chaos_network_partition(duration_seconds=4, mode="refuse"):
                produce(producer_v2, trade_factory, 200)
                consumer.subscribe([platform_config.topics.trades])
                started = time.monotonic()
                consumer.poll(timeout=2.0)
                assert time.monotonic() - started < 3.0
                assert acked(chaos_ledger) == 100
        finally:
            consumer.close()
        assert producer_v2.flush(60) == 0
        verify_no_loss()

    def test_partial_partition_split_brain(
        self, producer_v2: Any, trade_factory: Any, chaos_network_partition: Any, platform_config: Any,
        chaos_ledger: Any, verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """Only the producer is cut off from the broker (split brain): a consumer keeps reading what was
        written before; the producer's new records wait and arrive after the heal, exactly once."""
        produce(producer_v2, trade_factory, 100, "AAPL")
        assert producer_v2.flush(30) == 0
        with chaos_network_partition(duration_seconds=None, mode="refuse", clients=["producer"]):
            produce(producer_v2, trade_factory, 100, "AAPL")
            consumer = Consumer({**platform_config.kafka_base(), "group.id": f"g-{uuid.uuid4().hex[:6]}",
                                 "client.id": "consumer", "auto.offset.reset": "earliest",
                                 "session.timeout.ms": 6000})  # fmt: skip
            consumer.subscribe([platform_config.topics.trades])
            read = 0
            deadline = time.monotonic() + 30
            while read < 100 and time.monotonic() < deadline:
                read += sum(1 for m in consumer.consume(200, 0.5) if m.error() is None)
            consumer.close()
            assert read == 100
            assert acked(chaos_ledger) == 100
        assert producer_v2.flush(60) == 0
        verify_no_loss()
        assert acked(chaos_ledger) == 200


class TestKafkaResourceConstraints:
    def test_cpu_pressure_throttles_without_loss(
        self, make_producer: Any, trade_factory: Any, chaos_kafka_resource_limit: Any, chaos_ledger: Any,
        verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """Broker limited to 2% of a core under a stream of small produce requests: the kernel throttles
        it, throughput drops (measured), and still every record is acknowledged and nothing is lost."""
        producer = make_producer(kafka_overrides={"linger.ms": 0, "batch.num.messages": 10})

        def acks_per_second(window: float = 2.0) -> float:
            before = acked(chaos_ledger)
            produce(producer, trade_factory, 3000)
            producer.flush(window)
            return (acked(chaos_ledger) - before) / window

        baseline = acks_per_second()
        assert producer.flush(60) == 0
        with chaos_kafka_resource_limit(cpu_quota=2000, mem_limit=None) as fault:
            limited = acks_per_second()
        assert producer.flush(120) == 0
        fault.note(acks_per_s={"baseline": round(baseline), "limited": round(limited)})
        assert fault.restore_effect.throttled_periods > 0, fault.restore_effect
        assert limited < baseline, (baseline, limited)
        verify_no_loss()

    def test_memory_pressure_oom_behaviour(
        self, producer_v2: Any, trade_factory: Any, chaos_kafka_resource_limit: Any, k2_stack: Any,
        chaos_ledger: Any, verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """Broker capped at 96 MB while a burst arrives: either it fits (no OOM kill) or the kernel kills
        it and the stack brings it back; either way acknowledged records are never lost."""
        with chaos_kafka_resource_limit(cpu_quota=None, mem_limit="96m") as fault:
            produce(producer_v2, trade_factory, 5000)
            producer_v2.flush(30)
        fault.note(oom_kills=fault.restore_effect.oom_kills)
        k2_stack.up()  # restarts the broker if the kernel killed it
        assert producer_v2.flush(60) == 0
        verify_no_loss()


class TestKafkaDiskPressure:
    def test_log_storage_full(
        self, producer_v2: Any, trade_factory: Any, chaos_session: Any, chaos_ledger: Any, verify_no_loss: Any
    ) -> None:
        """The broker's log filesystem (its store's size-limited disk) filled to the last byte: what it cannot
        store is never acknowledged (buffered, or failed with a typed outcome); once space is freed the
        producer delivers again, and nothing acknowledged is missing."""
        from k2.chaos.faults import disk_fill, service_failure

        produce(producer_v2, trade_factory, 100)
        assert producer_v2.flush(30) == 0
        with disk_fill("kafka", fullness=1.0, session=chaos_session) as fault:
            assert fault.effect.fullness >= 0.97  # of 1 GiB: at most ~30 MB left, of which ext4 keeps some
            during = [trade_factory() for _ in range(300)]
            for trade in during:
                producer_v2.produce_trade(trade)
            producer_v2.flush(5)
        assert producer_v2.flush(60) == 0
        for _ in range(3):  # resend what the ledger says failed, as the producer's error says to
            failed = [t for t in during if chaos_ledger.get(t["trade_id"]).state.value == "failed"]
            for trade in failed:
                producer_v2.produce_trade(trade)
            assert producer_v2.flush(60) == 0
        # What was acknowledged while the disk was full must really be on it: restart the store and look.
        with service_failure("kafka-store", duration_seconds=1, mode="stop", session=chaos_session):
            pass
        verify_no_loss()


class TestKafkaLatency:
    def test_high_latency_stays_within_timeouts(
        self, producer_v2: Any, trade_factory: Any, chaos_kafka_latency: Any, chaos_ledger: Any, verify_no_loss: Any
    ) -> None:
        """200 ms added to every broker response: acknowledgements take at least that long, none times out."""
        with chaos_kafka_latency(latency_ms=200, jitter_ms=0):
            produce(producer_v2, trade_factory, 200)
            assert producer_v2.flush(60) == 0
        latencies = [op.latency_s for op in chaos_ledger.ops() if op.latency_s is not None]
        assert min(latencies) >= 0.2
        verify_no_loss()

    def test_jitter_exercises_retry_backoff(
        self, producer_v2: Any, trade_factory: Any, chaos_kafka_latency: Any, chaos_draws: Any, chaos_ledger: Any,
        verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """60-140 ms of latency with 20-50 ms of jitter (drawn from the seed): acknowledgement latency spreads,
        retries (if any) add no duplicates."""
        latency_ms = chaos_draws.randint("latency_ms", 60, 140)
        jitter_ms = chaos_draws.randint("jitter_ms", 20, 50)
        with chaos_kafka_latency(latency_ms=latency_ms, jitter_ms=jitter_ms):
            for _ in range(10):
                produce(producer_v2, trade_factory, 20)
                producer_v2.flush(30)
        assert producer_v2.flush(60) == 0
        verify_no_loss()
        assert acked(chaos_ledger) == 200


class TestConcurrentFailures:
    def test_kafka_and_schema_registry_down_together(
        self, producer_v2: Any, make_producer: Any, trade_factory: Any, chaos_kafka_failure: Any,
        chaos_schema_registry_failure: Any, chaos_ledger: Any, verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """Kafka frozen and the schema registry stopped at once (cascading failure): a producer that
        already knows its schemas buffers; a new producer gets a typed error naming the registry; both
        recover when the services return."""
        produce(producer_v2, trade_factory, 50)
        assert producer_v2.flush(30) == 0
        with (
            chaos_kafka_failure(duration_seconds=None, mode="pause"),
            chaos_schema_registry_failure(duration_seconds=None, mode="stop"),
        ):
            produce(producer_v2, trade_factory, 100)
            fresh = make_producer()
            with pytest.raises(PlatformError, match="(?i)registry"):
                fresh.produce_trade(trade_factory())
        assert producer_v2.flush(60) == 0
        fresh.produce_trade(trade_factory())
        assert fresh.flush(60) == 0
        verify_no_loss()


class TestConsumerResilience:
    def test_consumer_poll_timeouts_and_rebalance_under_faults(
        self, producer_v2: Any, trade_factory: Any, chaos_kafka_failure: Any, platform_config: Any,
        verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """Two consumers in a group; the broker freezes mid-consumption: polls return within their timeout;
        after resume one consumer leaves, the other takes over its partitions and reads everything."""
        produce(producer_v2, trade_factory, 300)
        assert producer_v2.flush(30) == 0
        group = f"g-{uuid.uuid4().hex[:6]}"
        conf = {**platform_config.kafka_base(), "group.id": group, "client.id": "consumer",
                "auto.offset.reset": "earliest", "enable.auto.commit": False, "session.timeout.ms": 6000}  # fmt: skip
        first, second = Consumer(conf), Consumer(conf)
        first.subscribe([platform_config.topics.trades])
        second.subscribe([platform_config.topics.trades])
        seen: set[tuple[int, int]] = set()

        def drain(consumer: Any, wait: float) -> None:
            for msg in consumer.consume(500, wait):
                if msg.error() is None:
                    seen.add((msg.partition(), msg.offset()))

        try:
            deadline = time.monotonic() + 20
            while not (first.assignment() and second.assignment()) and time.monotonic() < deadline:
                drain(first, 0.2)
                drain(second, 0.2)
            with chaos_kafka_failure(duration_seconds=3, mode="pause"):
                started = time.monotonic()
                drain(first, 1.0)
                assert time.monotonic() - started < 2.0
            first.commit(asynchronous=False)
            first.close()
            deadline = time.monotonic() + 40
            while len(seen) < 300 and time.monotonic() < deadline:
                drain(second, 0.5)
        finally:
            second.close()
        assert len(seen) == 300
        verify_no_loss()
