"""Iceberg writer throughput with 1, 2 and 3 writer processes in one consumer group (k2.scenarios.writer_group),
against the producer's rate measured in the same run: how many writers keep up with one producer?

A backlog of trades (3 partitions) is produced once; each group size then drains it from the start into a
namespace of its own. Throughput = rows / (last partition committed - first member assigned), so it includes
the rebalances a group of that size goes through, as a real deployment would.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.bench_platform import trades
from benchmarks.common import fresh_dir, write
from k2.platform.config import PlatformConfig, Topics, ensure_topics
from k2.platform.producer import MarketDataProducer
from k2.scenarios.writer_group import WriterGroup
from k2.stack import LocalStack


def produce_backlog(config: PlatformConfig, count: int) -> tuple[dict[int, int], float]:
    """(next offset per partition, records/s) for `count` trades produced as fast as the producer can."""
    ends: dict[int, int] = {}

    def delivered(event: Any) -> None:
        ends[event.partition] = max(ends.get(event.partition, 0), event.offset + 1)

    records = trades(count, int(time.time() * 1e6) - 60_000_000)
    with MarketDataProducer(config, observer=delivered) as producer:
        producer.produce_trade(records[0])
        producer.flush(30)
        started = time.perf_counter()
        for record in records[1:]:
            producer.produce_trade(record)
        assert producer.flush(300) == 0
        rate = (count - 1) / (time.perf_counter() - started)
    return ends, rate


def first_assignment(group: WriterGroup) -> float:
    """Epoch seconds of the first 'assigned' line in any member's log."""
    stamps = []
    for member in group.members():
        for line in Path(member.log).read_text().splitlines():
            if "iceberg-writer: assigned" in line:
                stamps.append(datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp())
                break
    return min(stamps)


def drain(config: PlatformConfig, writers: int, ends: dict[int, int], root: Path) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    group = WriterGroup(config.with_(namespace=f"w{writers}{tag}"), f"bench-{writers}-{tag}", root=root / tag,
                        batch_rows=50_000, batch_seconds=1.0, session_timeout_ms=6000)  # fmt: skip
    try:
        group.start(writers)
        waited = group.wait_caught_up(config.topics.trades, ends, 900)
        done = time.time()
        assert waited is not None, f"{writers} writer(s) did not drain the backlog"
        rows = sum(ends.values())
        seconds = done - first_assignment(group)
        return {
            "writers": writers,
            "rows": rows,
            "seconds": round(seconds, 2),
            "rows_per_second": round(rows / seconds),
        }
    finally:
        group.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trades", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=2, help="drains per group size (median reported)")
    args = parser.parse_args()
    with fresh_dir() as data_dir, LocalStack(data_dir) as stack, tempfile.TemporaryDirectory() as scratch:
        config = PlatformConfig.from_endpoints(stack.endpoints(), topics=Topics.with_prefix(f"g{uuid.uuid4().hex[:6]}"))
        ensure_topics(config)
        ends, produce_rate = produce_backlog(config, args.trades)
        print(f"producer: {produce_rate:,.0f} trades/s ({sum(ends.values()):,} trades over {len(ends)} partitions)")
        sizes: dict[int, dict[str, Any]] = {}
        for writers in (1, 2, 3):
            runs = [drain(config, writers, ends, Path(scratch)) for _ in range(args.rounds)]
            rates = [r["rows_per_second"] for r in runs]
            median = statistics.median(rates)
            sizes[writers] = {"rows_per_second": round(median), "runs": runs,
                              "vs_producer": round(median / produce_rate, 2)}  # fmt: skip
            print(f"{writers} writer(s): {median:,.0f} rows/s, {median / produce_rate:.0%} of the producer's rate "
                  f"(runs: {rates})")  # fmt: skip
    one = sizes[1]["rows_per_second"]
    keep_up = next((w for w in (1, 2, 3) if sizes[w]["rows_per_second"] >= produce_rate), None)
    results = {
        "producer_records_per_second": round(produce_rate),
        "partitions": len(ends),
        "trades": args.trades,
        "writers": sizes,
        "speedup_vs_one_writer": {w: round(sizes[w]["rows_per_second"] / one, 2) for w in sizes},
        "writers_that_keep_up": keep_up,
    }
    print(f"writers needed to keep up with one producer: {keep_up or 'more than 3'}")
    print(f"results: {write('writer_group', results)}")


if __name__ == "__main__":
    main()
