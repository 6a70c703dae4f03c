"""The workload an exploration drives: the real pipeline at a steady rate, watched.

    pipeline = Pipeline(stack, Workload(rate=200), seed=7, run_id="a1b2c3")
    pipeline.start()            # topics, writers consuming, then the producer and the queries
    ...                         # faults come and go; the probes read pipeline.meter
    pipeline.stop_traffic()     # the producer flushes and closes: every record has an outcome
    pipeline.heal_writers()     # members that are down start again
    found = pipeline.check(drain_timeout_s=60)

- One producer (producer_v2: idempotent, acks=all, Avro) sends `rate` trades a second, paced; each trade is
  entered in the ledger BEFORE it is sent, so a record that never gets an outcome shows as pending.
- The writers (a consumer group of `writers` members) write both Iceberg tables.
- A query every `query_interval_s` through the query engine (deadline `query_timeout_s`); the query in flight
  and when it began are visible, so a caller blocked past its deadline is seen as a hang.
- Payloads and query symbols are drawn from the run's seed (k2.chaos.seeds: `workload`, `queries` streams).
- Each run has its own topics and Iceberg namespace, so runs on one stack never see each other's data.
- An unexpected exception in the producer or query loop is kept as evidence of a crash; typed platform
  errors (an outage seen and named) are the platform doing its job and only count as failed operations.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k2.chaos.checker import CheckResult, Observed, check, wait_drained
from k2.chaos.ledger import Ledger, OpState
from k2.chaos.seeds import rng_for
from k2.explore.errors import ExploreError
from k2.explore.meter import Meter
from k2.explore.schedule import Workload
from k2.explore.writers import Writers, default_writers
from k2.platform.config import PlatformConfig, Topics, ensure_topics
from k2.platform.errors import PlatformError
from k2.platform.planted import BUGS

__all__ = ["DrainResult", "Pipeline"]

log = logging.getLogger(__name__)

# librdkafka's client-side deadline for a produce request (request.timeout.ms is only the broker's): a request
# unanswered this long is sent again, as over a real network with a stalled broker (normal p99 is under 1 s).
PRODUCER_SOCKET_TIMEOUT_MS = 3000
FLOWING_TIMEOUT_S = 90.0
SETTLED_S = 3.0
TICK_S = 0.01


@dataclass
class DrainResult:
    """What the end of a run found: the checker's result, whether the writers committed everything
    acknowledged (`caught_up`), and how long the drain took."""

    check: CheckResult
    caught_up: bool
    waited_s: float
    behind: dict[int, int]  # partition -> acknowledged records the writers had not committed
    positions: dict[tuple[int, int], str]  # what the topic holds: (partition, offset) -> key


class Pipeline:
    def __init__(
        self,
        stack: Any,
        workload: Workload,
        seed: int,
        run_id: str,
        *,
        root: Path | None = None,
        writers: Callable[[PlatformConfig, str, int, str | None], Writers] | None = None,
    ) -> None:
        self.workload, self.seed, self.run_id = workload, seed, run_id
        tag = "".join(c for c in run_id.lower() if c.isalnum())[:16]
        self.config = PlatformConfig.from_endpoints(
            stack.endpoints(), topics=Topics.with_prefix(f"explore{tag}"), namespace=f"explore{tag}"
        )
        self.ledger = Ledger(name=run_id)
        self.meter = Meter()
        self.errors: list[str] = []  # unexpected exceptions: evidence of a crash
        self.query_in_flight: tuple[float, str] | None = None  # (monotonic start, symbol)
        self.last_query: tuple[float, str, float] | None = None  # (monotonic start, symbol, seconds it took)
        make = writers or default_writers()[0]
        self.writers = make(self.config, f"explore-{tag}", workload.writers, self.planted("writer"))
        self.root = root
        self._stop = threading.Event()
        self._producer_thread: threading.Thread | None = None
        self._query_thread: threading.Thread | None = None
        self._producer: Any = None
        self._engine: Any = None

    def planted(self, component: str) -> str | None:
        """The planted bug this run arms in `component` (test-only; None almost always)."""
        return next((n for n in self.workload.planted if n in BUGS and BUGS[n].component == component), None)

    # -- start and stop ------------------------------------------------------------------------------

    def start(self) -> None:
        from k2.platform.producer import MarketDataProducer
        from k2.platform.query import QueryEngine

        ensure_topics(self.config, partitions=self.workload.partitions)
        self.writers.start()
        # librdkafka logs each refused connection to stderr itself (level 3); faults make many: the ledger has them
        overrides = {"client.id": "producer", "socket.timeout.ms": PRODUCER_SOCKET_TIMEOUT_MS, "log_level": 2}
        self._producer = MarketDataProducer(
            self.config, observer=self._observe, kafka_overrides=overrides, planted_bug=self.planted("producer")
        )
        self._engine = QueryEngine(
            self.config, timeout=self.workload.query_timeout_s, planted_bug=self.planted("query")
        )
        self._producer_thread = self._spawn("explore-producer", self._produce_loop)
        self._query_thread = self._spawn("explore-queries", self._query_loop)
        self._wait_flowing(FLOWING_TIMEOUT_S)
        self.meter.start()

    def _wait_flowing(self, timeout: float) -> None:
        """Until the writers have committed on every partition: the group has formed and each partition has an
        owner, so the run's clock (and its first fault) starts on a pipeline in its steady state."""
        deadline = time.monotonic() + timeout
        while True:
            committed = self.committed(timeout=2.0) or {}
            if len(committed) == self.workload.partitions and all(o > 0 for o in committed.values()):
                return
            dead = self.writers.dead()
            if self.errors or dead or time.monotonic() >= deadline:
                why = (
                    f"{', '.join(dead)} exited while starting"
                    if dead
                    else self.errors[0].splitlines()[0]
                    if self.errors
                    else f"after {timeout:g}s the writers had committed {committed or 'nothing'}"
                )
                raise ExploreError(
                    f"the pipeline did not start: {why}. Remedy: `k2 stack status`, and the writers' logs"
                )
            time.sleep(0.25)

    def _spawn(self, name: str, loop: Callable[[], None]) -> threading.Thread:
        thread = threading.Thread(target=self._guarded, args=(loop,), name=name, daemon=True)
        thread.start()
        return thread

    def stop_traffic(self, timeout: float = 30.0) -> None:
        """Stop sending and querying; the producer flushes (bounded) so every record has an outcome."""
        self._stop.set()
        if self._producer_thread is not None:
            self._producer_thread.join(timeout)
        if self._producer is not None:
            self._producer.close(timeout)
        if self._query_thread is not None:
            self._query_thread.join(1.0)  # a query blocked on a frozen dependency is left behind (daemon)
        if self._engine is not None:
            self._engine.close()

    def heal_writers(self) -> list[str]:
        return self.writers.restart_dead()

    def close(self) -> None:
        self._stop.set()
        self.writers.close()

    # -- the loops --------------------------------------------------------------------------------------

    def _guarded(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except Exception as exc:
            self.errors.append(
                f"{threading.current_thread().name}: {type(exc).__name__}: {exc}\n"
                + "".join(traceback.format_exc(limit=8))
            )
            log.exception("explore workload: unexpected failure")

    def _produce_loop(self) -> None:
        from k2.scenarios.records import TradeFactory

        factory = TradeFactory(rng_for(self.seed, "workload"), run_tag=f"x{self.run_id}")
        rate, sent, began = self.workload.rate, 0, time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - began) * rate)
            while sent < due and not self._stop.is_set():
                trade = factory()
                self.ledger.invoke(trade["trade_id"], group=trade["symbol"], seq=trade["sequence_number"])
                self.meter.invoked()
                sent += 1
                with contextlib.suppress(PlatformError):  # the observer was told: a named outage is not a crash
                    self._producer.produce_trade(trade)
            self._producer.poll(0)
            self._stop.wait(TICK_S)

    def _query_loop(self) -> None:
        from k2.scenarios.records import SYMBOLS

        rng, symbols = rng_for(self.seed, "queries"), sorted(SYMBOLS)
        while not self._stop.wait(self.workload.query_interval_s):
            symbol = rng.choice(symbols)
            started = time.monotonic()
            self.query_in_flight = (started, symbol)
            ok = False
            try:
                self._engine.vwap(symbol)
                ok = True
            except PlatformError as exc:
                log.info("explore query %s: %s", symbol, exc)
            finally:
                took = time.monotonic() - started
                self.query_in_flight, self.last_query = None, (started, symbol, took)
                self.meter.query(ok, took)

    def _observe(self, event: Any) -> None:
        self.ledger.observe(event)
        status = str(getattr(event.status, "value", event.status))
        if status == "acknowledged":
            self.meter.acked(max(0.0, event.completed_at - event.enqueued_at), event.partition, event.offset)
        else:
            self.meter.failed(unknown=status == "unknown")

    # -- what the probes and the end need -----------------------------------------------------------------

    def committed(self, timeout: float = 2.0) -> dict[int, int] | None:
        """The writers' committed offset per partition of the trades topic; None if the broker did not answer."""
        try:
            return self.writers.committed(self.config.topics.trades, list(range(self.workload.partitions)), timeout)
        except Exception as exc:
            log.debug("explore: committed offsets unknown: %s", exc)
            return None

    def acked_ends(self) -> dict[int, int]:
        """Per partition, one past the highest offset acknowledged to the producer."""
        ends: dict[int, int] = defaultdict(int)
        for op in self.ledger.ops():
            if op.state is OpState.ACKED and op.partition is not None and op.offset is not None and op.offset >= 0:
                ends[op.partition] = max(ends[op.partition], op.offset + 1)
        return dict(ends)

    def check(self, drain_timeout_s: float = 60.0) -> DrainResult:
        """Read the topic, wait (bounded) until Iceberg holds every trade acknowledged or found on the topic,
        then run the checker on what those independent readers found."""
        from k2.scenarios.sinks import IcebergReader, KafkaTopicReader

        topic = KafkaTopicReader(self.config, self.config.topics.trades)
        began = time.monotonic()
        try:
            # A read stops at the first empty fetch, which a slow broker gives well before its end: read on
            # until every acknowledged record was seen (bounded), then once more for what followed them.
            wait_drained(topic.read, self.ledger.acked_keys(), drain_timeout_s, poll=0.5)
            on_topic = topic.read(max_wait=0.5)
        finally:
            topic.close()
        expected = set(self.ledger.acked_keys()) | {o.key for o in on_topic}
        iceberg = IcebergReader(self.config)
        in_iceberg = self._drain(iceberg, expected, max(5.0, drain_timeout_s - (time.monotonic() - began)))
        waited = time.monotonic() - began
        result = check(
            self.ledger,
            on_topic + in_iceberg,
            name=f"explore {self.run_id}",
            sources=[topic.source, iceberg.source],
            ordered=[topic.source],
            ack_positions=[topic.source],  # the broker said where each record is: a wrong place is an anomaly
            unreadable=topic.unreadable,
            anomalies=iceberg.audit(),
        )
        committed = self.committed(timeout=5.0) or {}
        behind = {p: end - committed.get(p, -1) for p, end in self.acked_ends().items() if committed.get(p, -1) < end}
        positions = {(int(o.position[0]), int(o.position[1])): o.key for o in on_topic if o.position is not None}
        return DrainResult(result, not behind, waited, behind, positions)

    def _drain(self, iceberg: Any, expected: set[str], timeout: float) -> list[Observed]:
        """Iceberg's trades once it holds every `expected` key, or at `timeout` — or sooner when the writers have
        committed past every acknowledged record and Iceberg has not changed for SETTLED_S: what is missing then
        is not coming (a writer commits its offsets only after its rows are in Iceberg, unless it is broken)."""
        deadline = time.monotonic() + timeout
        settled_since: float | None = None
        last = -1
        while True:
            found: list[Observed] = iceberg.read()
            if expected <= {o.key for o in found} or time.monotonic() >= deadline:
                return found
            committed = self.committed(timeout=2.0) or {}
            caught_up = all(committed.get(p, -1) >= end for p, end in self.acked_ends().items())
            if caught_up and len(found) == last:
                settled_since = settled_since or time.monotonic()
                if time.monotonic() - settled_since >= SETTLED_S:
                    return found
            else:
                settled_since = None
            last = len(found)
            time.sleep(0.5)

    @property
    def kafka_source(self) -> str:
        return f"kafka:{self.config.topics.trades}"
