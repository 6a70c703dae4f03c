"""Broker failures on a 3-broker Kafka (`k2 stack up --brokers 3`): the producer bootstraps from all three and
must fail over to a survivor when the broker it uses is killed or frozen past its timeouts.

What a 3-broker Tansu is: three stateless front-ends over one log store (no replication, no leader election,
every broker calls itself node 111). Failover works because librdkafka re-bootstraps; the store stays the
single point of failure. Where Tansu acknowledges a record with a wrong offset (a frozen broker's retried
batch answered DUPLICATE_SEQUENCE_NUMBER by a survivor, reported delivered at offset -1/0/1 while the frozen
broker writes it later at its real offset), the checker's "acknowledged with a wrong offset" anomaly says so
beside the outcome, with each record's claimed and real position.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from k2.chaos.faults import service_failure

pytestmark = [pytest.mark.chaos, pytest.mark.chaos_kafka]

NODE_ID = 111  # every Tansu 0.6 broker's id


class BrokerInUse:
    """Which broker a librdkafka client talks to for node 111, from its statistics (updated every 200 ms)."""

    def __init__(self, stack: Any) -> None:
        from k2.stack.services.kafka import broker_names

        addresses = stack.endpoints().kafka_brokers
        self._names = dict(zip(addresses, broker_names(len(addresses)), strict=True))
        self._current: str | None = None
        self._lock = threading.Lock()

    def conf(self) -> dict[str, Any]:
        return {"statistics.interval.ms": 200, "stats_cb": self._on_stats}

    def _on_stats(self, raw: str) -> None:
        for broker in json.loads(raw).get("brokers", {}).values():
            if broker.get("nodeid") == NODE_ID and broker.get("state") == "UP":
                with self._lock:
                    self._current = self._names.get(broker.get("nodename", ""), self._current)

    def current(self, producer: Any, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            producer.poll(0.1)
            with self._lock:
                if self._current is not None:
                    return self._current
            if time.monotonic() > deadline:
                raise AssertionError(f"the producer reported no connected broker within {timeout:g}s")


def produce_for(producer: Any, factory: Any, seconds: float, per_second: int = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(per_second // 10):
            producer.produce_trade(factory())
        producer.poll(0.1)


def first_ack_after(ledger: Any, moment: float) -> float | None:
    times = [op.completed_at for op in ledger.ops() if op.latency_s is not None and op.completed_at >= moment]
    return round(min(times) - moment, 3) if times else None


class TestMultiBrokerFailover:
    def test_killed_broker_clients_fail_over_to_a_survivor(
        self, make_producer: Any, multi_broker_config: Any, k2_stack: Any, trade_factory: Any, chaos_session: Any,
        chaos_ledger: Any, verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """The broker the producer uses is SIGKILLed for 3 s under load: librdkafka re-bootstraps to a survivor
        (measured: the first acknowledgement after the kill), nothing acknowledged is lost or duplicated."""
        watch = BrokerInUse(k2_stack)
        producer = make_producer(config=multi_broker_config, kafka_overrides=watch.conf())
        produce_for(producer, trade_factory, 0.5)
        assert producer.flush(30) == 0
        victim = watch.current(producer)
        with service_failure(victim, duration_seconds=3, mode="kill", session=chaos_session) as fault:
            produce_for(producer, trade_factory, 2.5)
            fault.record.notes["first_ack_after_s"] = first_ack_after(chaos_ledger, fault.record.injected_at or 0)
            fault.record.notes["failed_over_to"] = watch.current(producer)
        assert producer.flush(60) == 0
        result = verify_no_loss()  # with Tansu's wrong acknowledged offsets, if any, as anomalies beside it
        fault.record.notes["wrong_ack_offsets"] = sum(a.kind == "wrong_ack_offset" for a in result.anomalies)
        assert fault.record.notes["first_ack_after_s"] is not None, "no acknowledgement while the broker was down"
        assert fault.record.notes["failed_over_to"] != victim

    def test_broker_paused_past_the_client_timeouts(
        self, make_producer: Any, multi_broker_config: Any, k2_stack: Any, trade_factory: Any, chaos_session: Any,
        chaos_ledger: Any, verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """The producer's broker is frozen for 6 s, past the producer's 2 s request and socket timeouts: its
        requests time out and are retried, and everything is delivered once (measured: the first ack comes after
        the thaw). Tansu often acknowledges the batches in flight with wrong offsets (see the module doc): not a
        loss, reported as "acknowledged with a wrong offset" anomalies with each record's claimed and real place."""
        watch = BrokerInUse(k2_stack)
        timeouts = {"socket.timeout.ms": 2000, "request.timeout.ms": 2000}
        producer = make_producer(config=multi_broker_config, kafka_overrides={**watch.conf(), **timeouts})
        produce_for(producer, trade_factory, 0.5)
        assert producer.flush(30) == 0
        victim = watch.current(producer)
        with service_failure(victim, duration_seconds=6, mode="pause", session=chaos_session) as fault:
            produce_for(producer, trade_factory, 5.5)
        assert producer.flush(60) == 0
        result = verify_no_loss()  # Tansu's wrong acknowledged offsets, if any, as anomalies beside the outcome
        fault.record.notes["wrong_ack_offsets"] = sum(a.kind == "wrong_ack_offset" for a in result.anomalies)
        fault.record.notes["first_ack_after_s"] = first_ack_after(chaos_ledger, fault.record.injected_at or 0)
