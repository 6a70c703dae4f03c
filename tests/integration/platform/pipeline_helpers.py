"""What the pipeline tests (producer, writer, query) share: a module-wide stack, records, and waits."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from k2.platform import iceberg_tables
from k2.platform.config import PlatformConfig, Topics, ensure_topics
from k2.stack import LocalStack

T = TypeVar("T")

SYMBOLS = {"BTC-USD": "crypto", "ETH-USD": "crypto", "AAPL": "equities", "MSFT": "equities"}


@contextmanager
def running_stack() -> Iterator[LocalStack]:
    """A stack for a whole test module, in a fresh `mkdtemp` dir (0700, as conftest's stack_dir)."""
    root = Path(tempfile.mkdtemp(prefix="k2-test-"))
    stack = LocalStack(root / "stack")
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)


def fresh_config(stack: LocalStack, **changes: Any) -> PlatformConfig:
    """Own topics and Iceberg namespace per test, so tests sharing a stack never see each other's data."""
    tag = uuid.uuid4().hex[:8]
    config = PlatformConfig.from_endpoints(
        stack.endpoints(), topics=Topics.with_prefix(f"t{tag}"), namespace=f"ns{tag}", **changes
    )
    ensure_topics(config)
    return config


def now_us() -> int:
    return int(datetime.now(UTC).timestamp() * 1_000_000)


def make_trade(i: int, symbol: str = "BTC-USD", *, base_us: int | None = None, **changes: Any) -> dict[str, Any]:
    base = now_us() - 30_000_000 if base_us is None else base_us
    record = {
        "trade_id": f"T-{symbol}-{i}",
        "symbol": symbol,
        "exchange": "XNAS" if SYMBOLS.get(symbol) == "equities" else "COINBASE",
        "asset_class": SYMBOLS.get(symbol, "crypto"),
        "price": Decimal(100 + i % 97) + Decimal(i % 1000) / 1000 + Decimal("0.00000001") * (i % 7),
        "quantity": Decimal(1 + i % 5) / 4,
        "side": ("BUY", "SELL")[i % 2],
        "event_timestamp": base + i * 1_000,
        "ingest_timestamp": base + i * 1_000 + 50,
        "sequence_number": i,
        "trade_conditions": ["X"] if i % 3 == 0 else [],
        "source_sequence": i * 10 if i % 2 else None,
    }
    return {**record, **changes}


def make_quote(i: int, symbol: str = "ETH-USD", **changes: Any) -> dict[str, Any]:
    base = now_us() - 30_000_000
    bid = Decimal(2000 + i % 50) + Decimal("0.12345678")
    record = {
        "quote_id": f"Q-{symbol}-{i}",
        "symbol": symbol,
        "exchange": "COINBASE",
        "asset_class": SYMBOLS.get(symbol, "crypto"),
        "bid_price": bid,
        "bid_size": Decimal(i % 4),
        "ask_price": bid + Decimal("0.5"),
        "ask_size": Decimal("1.25"),
        "event_timestamp": base + i * 1_000,
        "ingest_timestamp": base + i * 1_000 + 20,
        "sequence_number": i,
    }
    return {**record, **changes}


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll `condition` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T = condition()
    while not last:
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)
        last = condition()
    return last


def read_topic(config: PlatformConfig, topic: str, count: int, timeout: float = 30.0) -> list[Message]:
    """Read `count` messages from the start of every partition, without joining a group (no rebalance wait)."""
    consumer = Consumer(
        {**config.kafka_base(), "group.id": f"reader-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        messages: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(messages) < count and time.monotonic() < deadline:
            messages += [m for m in consumer.consume(1000, 0.2) if m.error() is None]
        return messages
    finally:
        consumer.close()


def table_rows(config: PlatformConfig, kind: str, asset_class: str) -> pa.Table:
    """Every row of one pipeline table (empty when it does not exist yet)."""
    catalog = iceberg_tables.build_catalog(config)
    try:
        table = iceberg_tables.open_table(catalog, config.namespace, kind, asset_class, create=False)
        if table is None:
            return iceberg_tables.arrow_schema(kind).empty_table()
        return table.scan().to_arrow()
    finally:
        catalog.engine.dispose()


def row_count(config: PlatformConfig, kind: str, asset_classes: tuple[str, ...] = ("crypto", "equities")) -> int:
    return sum(table_rows(config, kind, ac).num_rows for ac in asset_classes)


def start_writer_process(
    config: PlatformConfig, log: Path, *, group: str, extra_env: dict[str, str] | None = None, batch_rows: int = 500
) -> subprocess.Popen[bytes]:
    """`python -m k2.platform.writer --assign-all`: a restart resumes at once (no rebalance wait)."""
    env = {**os.environ, **config.as_env(), **(extra_env or {})}
    argv = [sys.executable, "-m", "k2.platform.writer", "--group", group, "--batch-rows", str(batch_rows)]
    with open(log, "ab") as out:
        return subprocess.Popen(
            [*argv, "--batch-seconds", "0.3", "--assign-all"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
