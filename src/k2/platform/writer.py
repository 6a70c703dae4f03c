"""The Iceberg writer: a consumer group that batches trades and quotes into Iceberg, exactly once.

    writer = IcebergWriter(PlatformConfig.from_endpoints(ep)).start()   # a thread; or run() to block
    ...; writer.health(); writer.stop()                                  # stop flushes what it holds

or as a process (a test can SIGKILL it):  python -m k2.platform.writer   (reads `k2 stack env` variables)

Exactly once: see k2.platform.iceberg_tables. Each flush commits every table's rows together with the
offsets they reach (in the snapshot summary), and only then commits the Kafka offsets. Before each
append the table is re-read and rows below its stored offsets are dropped, so a restart after a crash
anywhere (or a retried commit that had in fact succeeded) neither loses nor duplicates a row.
Outages (S3, catalog, registry, Kafka) are retried with capped exponential backoff; consumption pauses
while a flush fails, so memory stays bounded and nothing is skipped or committed past unwritten data.
Any record it cannot process (undecodable, unknown schema id, failing validation, oversize, an exception
while decoding or converting it) goes to the dead-letter topic with the reason and its source topic,
partition and offset, and the writer goes on: one poison message never stops it (a dead letter too large
for the broker is truncated, never dropped). Only the schema registry being unreachable holds a record back.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer, TopicPartition

from k2.platform import iceberg_tables as tables
from k2.platform import planted
from k2.platform.config import PlatformConfig, ensure_topics
from k2.platform.consumer import MarketDataConsumer, RecordDecoder
from k2.platform.deadletter import DeadLetter, DeadLetterPublisher
from k2.platform.errors import DependencyUnavailable, KafkaUnavailable, PlatformError, ValidationError, WriterError
from k2.platform.evolution import ExtraField, TableColumns
from k2.platform.validation import DEFAULT_POLICY, ValidationPolicy

__all__ = ["CRASH_HOOK_ENV", "IcebergWriter", "WriterHealth", "main"]

log = logging.getLogger(__name__)
CRASH_HOOK_ENV = "K2_WRITER_CRASH_AFTER_ICEBERG_COMMITS"  # test hook: os._exit right after the Nth commit
CRASH_EXIT_CODE = 86


@dataclass(frozen=True)
class WriterHealth:
    status: str  # starting | running | degraded | stopped
    error: PlatformError | None  # the last failure while degraded (typed: StorageUnavailable, ...)
    failing_since: float | None
    consecutive_failures: int
    buffered_rows: int
    rows_written: int
    rows_skipped: int  # already in Iceberg (replayed after a restart), dropped
    dead_lettered: int
    iceberg_commits: int
    last_flush_at: float | None
    kafka_committed: dict[str, dict[int, int]] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.status == "running"


class IcebergWriter:
    def __init__(
        self,
        config: PlatformConfig,
        *,
        group_id: str = "k2-iceberg-writer",
        batch_max_rows: int = 20_000,
        batch_max_seconds: float = 1.0,
        max_buffered_rows: int = 100_000,
        retry_initial: float = 0.2,
        retry_max: float = 5.0,
        shutdown_timeout: float = 30.0,
        policy: ValidationPolicy = DEFAULT_POLICY,
        crash_after_iceberg_commits: int | None = None,
        assign_all: bool = False,
        consumer_overrides: dict[str, Any] | None = None,
        planted_bug: str | None = None,
    ) -> None:
        self.config = config
        self._planted = planted.arm(planted_bug, "writer")  # test-only; see k2.platform.planted
        self.group_id = group_id
        self.batch_max_rows, self.batch_max_seconds = min(batch_max_rows, max_buffered_rows), batch_max_seconds
        self.max_buffered_rows = max_buffered_rows
        self.retry_initial, self.retry_max = retry_initial, retry_max
        self.shutdown_timeout = shutdown_timeout
        self.crash_after = crash_after_iceberg_commits
        self._kinds = {config.topics.trades: "trade", config.topics.quotes: "quote"}
        self._topic_of = {kind: topic for topic, kind in self._kinds.items()}
        self.assign_all = assign_all  # every partition, no group membership: see MarketDataConsumer
        self._consumer_overrides = consumer_overrides
        self._decoder = RecordDecoder(config, policy=policy)
        self._columns = TableColumns()  # columns newer schemas added to the tables, per table
        self._dlq_producer = Producer({**config.kafka_base(), "enable.idempotence": True, "acks": "all"})
        self._dlq = DeadLetterPublisher(self._dlq_producer, config.topics.deadletter, keep_failed=True)
        self._consumer: MarketDataConsumer | None = None
        self._catalog: Any = None
        self._tables: dict[tuple[str, str], Any] = {}
        self._buffers: dict[tuple[str, str], tables.TableBuffer] = {}
        self._positions: dict[tuple[str, int], int] = {}  # next offset per partition, consumed so far
        self._committed: dict[tuple[str, int], int] = {}
        self._batch_started: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._status = "starting"
        self._error: PlatformError | None = None
        self._failing_since: float | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._counts = {"written": 0, "skipped": 0, "dead": 0, "commits": 0}
        self._last_flush: float | None = None

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> IcebergWriter:
        self._thread = threading.Thread(target=self.run, name="k2-iceberg-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Graceful: flush what is buffered, commit, leave the group."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.shutdown_timeout + 15)

    def run(self, stop: threading.Event | None = None) -> None:
        """Consume and write until `stop` (or stop()) is set; then flush and leave."""
        if stop is not None:
            self._stop = stop
        self._ensure_topics()
        if self._stop.is_set():
            return
        self._consumer = MarketDataConsumer(
            self.config, self.group_id, assign_all=self.assign_all, on_revoke=self._on_revoke,
            overrides=self._consumer_overrides,
        )  # fmt: skip
        self._consumer.start()
        self._set_status("running")
        log.info("iceberg-writer: consuming %s as group %s", ", ".join(self._kinds), self.group_id)
        try:
            while not self._stop.is_set():
                self._step()
        finally:
            self._shutdown()

    def _ensure_topics(self) -> None:
        while not self._stop.is_set():
            try:
                ensure_topics(self.config)
                return
            except PlatformError as exc:
                self._failed(exc)
                self._stop.wait(self._backoff())

    def health(self) -> WriterHealth:
        """A snapshot, safe from any thread: degraded (with the typed error) while a dependency fails."""
        with self._lock:
            committed: dict[str, dict[int, int]] = {}
            for (topic, partition), offset in self._committed.items():
                committed.setdefault(topic, {})[partition] = offset
            status, error = self._status, self._error
            kafka_error = self._consumer.kafka_error if self._consumer is not None else None
            if kafka_error is not None and status == "running":
                status, error = "degraded", kafka_error
            return WriterHealth(
                status, error, self._failing_since, self._failures,
                sum(b.size for b in list(self._buffers.values())), self._counts["written"], self._counts["skipped"],
                self._counts["dead"], self._counts["commits"], self._last_flush, committed,
            )  # fmt: skip

    # ---- the loop --------------------------------------------------------------------------------

    def _step(self) -> None:
        assert self._consumer is not None
        self._consumer.check_growth()
        if self._consumer.needs_rejoin:
            self._consumer.rejoin()
        self._consumer.probe()
        waiting = self._retry_at - time.monotonic()
        if self._failures and waiting > 0:
            # backing off: paused partitions fetch nothing, but consume() keeps the group membership alive
            self._consumer.pause(True)
            self._ingest_all(self._consumer.consume(1, min(waiting, 0.5)))
            return
        if self._due() and not self._flush():
            return
        self._consumer.pause(False)
        room = self.max_buffered_rows - sum(b.size for b in self._buffers.values())
        if room <= 0:
            return
        wait = 0.1
        if self._batch_started is not None:
            wait = max(0.0, min(wait, self._batch_started + self.batch_max_seconds - time.monotonic()))
        self._ingest_all(self._consumer.consume(min(room, 5000), wait))
        if self._planted == "writer-commits-before-iceberg":
            self._commit_offsets()  # the planted bug: before the rows reach Iceberg

    def _ingest_all(self, messages: list[Message]) -> None:
        for index, message in enumerate(messages):
            try:
                self._ingest(message)
            except (DependencyUnavailable, WriterError) as exc:  # not the record's fault: retry, never skip
                assert self._consumer is not None
                self._failed(exc)
                self._consumer.rewind(messages[index:])
                return

    def _due(self) -> bool:
        if self._batch_started is None:
            return False
        if self._failures:
            return True
        buffered = sum(b.size for b in self._buffers.values())
        return buffered >= self.batch_max_rows or time.monotonic() - self._batch_started >= self.batch_max_seconds

    def _ingest(self, message: Message) -> None:
        err = message.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("kafka: consume error %s", err.str())
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        kind = self._kinds[topic]
        try:
            record, schema_id = self._decoder.decode(kind, message.value())
            key = (kind, record["asset_class"])
            extra = self._decoder.extra_fields(schema_id, kind)
            if extra:  # a newer schema's fields: the table gets them as columns first (see k2.platform.evolution)
                self._evolve(key, extra)
        except (DependencyUnavailable, WriterError):
            raise  # not the record's fault (a service, or a table changing under us): retried
        except ValidationError as exc:
            self._dead_letter(kind, exc, message)
        except Exception as exc:  # anything else about this record must not stop the writer
            log.exception("iceberg-writer: %s %d/%d could not be processed", topic, partition, offset)
            reason = ValidationError(
                "<value>", f"could not be processed: {type(exc).__name__}: {str(exc)[:300]}",
                reason_code="unprocessable",
            )  # fmt: skip
            self._dead_letter(kind, reason, message)
        else:
            buffer = self._buffers.get(key)
            if buffer is None:
                buffer = self._buffers[key] = tables.TableBuffer(kind)
            buffer.add(record, partition, offset, extra)
        self._positions[(topic, partition)] = offset + 1
        if self._batch_started is None:
            self._batch_started = time.monotonic()

    def _evolve(self, key: tuple[str, str], extra: dict[str, ExtraField]) -> None:
        try:
            self._columns.ensure(key, extra, self._table)
        except ValidationError:
            raise
        except Exception as exc:  # the catalog or S3 failed: retried like any outage, the record is not skipped
            error = tables.classify_failure(exc, f"adding columns {', '.join(extra)} to the {key[0]} table")
            raise error if isinstance(error, PlatformError) else WriterError(str(error)) from exc

    def _dead_letter(self, kind: str, exc: ValidationError, message: Message) -> None:
        raw = message.value() or b""
        where = {"source_topic": message.topic(), "source_partition": message.partition()}
        letter = DeadLetter.from_validation("writer", kind, exc, None, source_offset=message.offset(), **where)
        self._dlq.publish(letter.with_raw(raw))
        self._counts["dead"] += 1

    def _dead_letter_row(self, kind: str, row: dict[str, Any], partition: int, offset: int, why: str) -> None:
        record_id = row.get(f"{kind}_id")  # validated: a string
        error = ValidationError("<row>", f"does not convert to the table: {why}", reason_code="unconvertible",
                                record_id=record_id)  # fmt: skip
        where = {"source_topic": self._topic_of[kind], "source_partition": partition, "source_offset": offset}
        self._dlq.publish(DeadLetter.from_validation("writer", kind, error, row, **where))
        self._counts["dead"] += 1

    # ---- flushing --------------------------------------------------------------------------------

    def _flush(self) -> bool:
        """Write every buffer to Iceberg, then dead letters to Kafka, then commit offsets. False on failure."""
        try:
            self._commit_tables()
            self._commit_kafka()
        except Exception as exc:
            self._failed(exc)
            outage = isinstance(tables.classify_failure(exc, "flush"), DependencyUnavailable)
            if self._planted == "writer-commits-before-iceberg" and outage:  # the planted bug: offsets committed
                log.warning("iceberg-writer: planted bug: dropping %d rows whose Iceberg commit failed",
                            sum(b.size for b in self._buffers.values()))  # fmt: skip
                self._buffers.clear()
                self._batch_started = None
            return False
        with self._lock:
            self._failures, self._error, self._failing_since = 0, None, None
            if self._status == "degraded":
                self._status = "running"
                log.info("iceberg-writer: recovered; writing again")
            self._last_flush = time.time()
        self._batch_started = None
        return True

    def _commit_tables(self) -> None:
        for key in list(self._buffers):
            topic = self._topic_of[key[0]]
            positions = {p: o for (t, p), o in self._positions.items() if t == topic}
            buffer = self._buffers[key]
            try:
                written, skipped = tables.write_exactly_once(lambda key=key: self._table(key), buffer, topic, positions)
            except tables.ConversionFailed:
                for row, partition, offset, why in buffer.drop_unconvertible():
                    self._dead_letter_row(key[0], row, partition, offset, why)
                written, skipped = tables.write_exactly_once(lambda key=key: self._table(key), buffer, topic, positions)
            self._counts["skipped"] += skipped
            del self._buffers[key]
            if written:
                self._counts["written"] += written
                self._counts["commits"] += 1
                if self.crash_after is not None and self._counts["commits"] >= self.crash_after:
                    log.warning(
                        "iceberg-writer: test hook: exit right after Iceberg commit %d", self._counts["commits"]
                    )
                    logging.shutdown()
                    os._exit(CRASH_EXIT_CODE)

    def _table(self, key: tuple[str, str]) -> Any:
        table = self._tables.get(key)
        if table is not None:
            return table.refresh()
        if self._catalog is None:
            self._catalog = tables.build_catalog(self.config)
        table = tables.open_table(self._catalog, self.config.namespace, key[0], key[1], create=True)
        self._tables[key] = table
        return table

    def _commit_kafka(self) -> None:
        assert self._consumer is not None
        if not self._dlq.settle(10.0):
            raise KafkaUnavailable("dead letters not acknowledged; Kafka offsets stay uncommitted until they are")
        self._commit_offsets()

    def _commit_offsets(self) -> None:
        assert self._consumer is not None
        todo = [TopicPartition(t, p, o) for (t, p), o in self._positions.items() if self._committed.get((t, p)) != o]
        if not todo:
            return
        try:
            self._consumer.commit(todo)
        except Exception as exc:
            # the rows are safe in Iceberg; a restart re-reads and drops them, so this only costs re-reading
            self._failed(KafkaUnavailable(f"offset commit failed after the Iceberg commit: {exc}"), soft=True)
            return
        with self._lock:
            for tp in todo:
                self._committed[(tp.topic, tp.partition)] = tp.offset

    def _failed(self, exc: BaseException, *, soft: bool = False) -> None:
        error = tables.classify_failure(exc, "writing to Iceberg")
        if not isinstance(error, PlatformError):
            error = WriterError(f"unexpected {type(exc).__name__}: {exc}", remedy="see the traceback in the log")
            log.exception("iceberg-writer: unexpected failure (retrying)", exc_info=exc)
        if not isinstance(error, KafkaUnavailable | WriterError):
            self._catalog, self._tables = None, {}  # rebuild connections after an outage
        with self._lock:
            self._error = error
            if soft:
                log.warning("%s", error)
                return
            self._failures += 1
            self._failing_since = self._failing_since or time.time()
            self._status = "degraded"
        self._retry_at = time.monotonic() + self._backoff()
        log.error("%s (attempt %d; retrying in %.1fs)", error, self._failures, self._backoff())

    def _backoff(self) -> float:
        return min(self.retry_max, self.retry_initial * 2 ** max(0, self._failures - 1))

    # ---- group membership and shutdown -----------------------------------------------------------

    def _on_revoke(self, partitions: list[TopicPartition]) -> None:
        """Flush before giving partitions up; what cannot be flushed is dropped and re-read by the next owner."""
        if self._batch_started is not None and not self._flush():
            log.warning("iceberg-writer: rebalance while degraded; unflushed rows will be re-read from Kafka")
        self._buffers.clear()
        self._positions.clear()
        self._batch_started = None

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.shutdown_timeout
        while self._batch_started is not None and time.monotonic() < deadline:
            if self._flush():
                break
            time.sleep(min(self._backoff(), max(0.0, deadline - time.monotonic())))
        if self._batch_started is not None:
            log.error(
                "iceberg-writer: stopping with %d rows unwritten; their offsets are not committed, so the next "
                "writer re-reads them. Remedy: check S3 and the catalog (`k2 stack status`)",
                sum(b.size for b in self._buffers.values()),
            )
        if self._consumer is not None:
            self._consumer.close()
        self._dlq_producer.flush(5.0)
        self._dlq_producer.close()
        self._set_status("stopped")
        log.info("iceberg-writer: stopped (%s)", self._counts)

    def _set_status(self, status: str) -> None:
        with self._lock:
            self._status = status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m k2.platform.writer", description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: $K2_KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--registry", help="schema registry URL (default: $K2_SCHEMA_REGISTRY_URL)")
    parser.add_argument("--group", default="k2-iceberg-writer", help="consumer group id")
    parser.add_argument("--batch-rows", type=int, default=20_000)
    parser.add_argument("--batch-seconds", type=float, default=1.0)
    parser.add_argument("--assign-all", action="store_true", help="take every partition without group membership")
    parser.add_argument("--consumer-conf", action="append", default=[], metavar="KEY=VALUE",
                        help="a librdkafka consumer setting, e.g. session.timeout.ms=6000 (repeatable)")  # fmt: skip
    parser.add_argument("--planted-bug", default=None, help="test-only (k2.platform.planted); never in production")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    given = {"kafka_bootstrap": args.bootstrap, "schema_registry_url": args.registry}
    try:
        config = PlatformConfig.from_env(**{k: v for k, v in given.items() if v})
    except KeyError as exc:
        print(f"iceberg-writer: {exc.args[0]}", file=sys.stderr)
        return 2
    overrides = dict(item.partition("=")[::2] for item in args.consumer_conf)
    if any(not key or not value for key, value in overrides.items()):
        print(f"iceberg-writer: --consumer-conf takes KEY=VALUE, got {args.consumer_conf}", file=sys.stderr)
        return 2
    crash = os.environ.get(CRASH_HOOK_ENV)
    try:
        writer = IcebergWriter(
            config, group_id=args.group, batch_max_rows=args.batch_rows, batch_max_seconds=args.batch_seconds,
            crash_after_iceberg_commits=int(crash) if crash else None, assign_all=args.assign_all,
            planted_bug=args.planted_bug,
            consumer_overrides=overrides,
        )  # fmt: skip
    except planted.PlantedBugRefused as exc:
        print(f"iceberg-writer: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"iceberg-writer: starting (group {args.group}, namespace {config.namespace})", file=sys.stderr, flush=True)
    writer.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
