"""The platform pipeline on the embedded stack: produce throughput (validated Avro trades), writer
throughput into Iceberg, end-to-end latency produce -> queryable, VWAP latency over 1M rows, and the
peak memory of the producer and of the writer (each measured in its own process).

    .venv/bin/python -m benchmarks.bench_platform [--trades 300000] [--vwap-rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.common import fresh_dir, summary, write
from k2.platform import iceberg_tables
from k2.platform.config import PlatformConfig, Topics, ensure_topics
from k2.platform.producer import MarketDataProducer
from k2.platform.query import QueryEngine
from k2.platform.writer import IcebergWriter
from k2.stack import LocalStack

SYMBOLS = [("BTC-USD", "crypto"), ("ETH-USD", "crypto"), ("AAPL", "equities"), ("MSFT", "equities")]


def trades(count: int, start_us: int) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        symbol, asset_class = SYMBOLS[i % len(SYMBOLS)]
        out.append(
            {
                "trade_id": f"B-{i}", "symbol": symbol, "exchange": "XNAS", "asset_class": asset_class,
                "price": Decimal(10_000 + i % 5000) / 100, "quantity": Decimal(1 + i % 9) / 8, "side": "BUY",
                "event_timestamp": start_us + i, "ingest_timestamp": start_us + i + 10, "sequence_number": i,
            }
        )  # fmt: skip
    return out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# ---- phases run in their own process, so their peak memory is theirs alone --------------------------


def phase_produce(config: PlatformConfig, count: int) -> dict[str, Any]:
    records = trades(count, int(time.time() * 1e6) - 60_000_000)
    baseline = current_rss_mib()
    producer = MarketDataProducer(config)
    producer.produce_trade(records[0])  # registry round trip and connection setup outside the timing
    producer.flush(30)
    started, cpu = time.perf_counter(), time.thread_time()
    for record in records[1:]:
        producer.produce_trade(record)
    loop_s, cpu_s = time.perf_counter() - started, time.thread_time() - cpu
    assert producer.flush(120) == 0
    total_s = time.perf_counter() - started
    producer.close()
    return {
        "records": count - 1,
        "records_per_second": round((count - 1) / total_s),
        "enqueue_per_second": round((count - 1) / loop_s),
        "caller_cpu_us_per_record": round(cpu_s / (count - 1) * 1e6, 2),
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def phase_write(config: PlatformConfig, count: int) -> dict[str, Any]:
    baseline = current_rss_mib()
    writer = IcebergWriter(config, group_id="bench", batch_max_rows=50_000, batch_max_seconds=1.0).start()
    started = time.perf_counter()
    first: float | None = None
    deadline = started + 600
    while writer.health().rows_written < count and time.perf_counter() < deadline:
        if first is None and (writer.health().buffered_rows or writer.health().rows_written):
            first = time.perf_counter()
        time.sleep(0.05)
    done = time.perf_counter()
    health = writer.health()
    writer.stop()
    first = first or started
    return {
        "rows": health.rows_written,
        "rows_per_second": round(health.rows_written / (done - first)),
        "iceberg_commits": health.iceberg_commits,
        "group_join_seconds": round(first - started, 2),
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def run_phase(name: str, config: PlatformConfig, count: int) -> dict[str, Any]:
    env = {**os.environ, **config.as_env(), "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_platform", "--phase", name, "--trades", str(count)],
        env=env, capture_output=True, text=True, timeout=900, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- measured in the orchestrating process ---------------------------------------------------------


def end_to_end_latency(config: PlatformConfig, probes: int) -> list[float]:
    """Produce one trade, then query until it is visible; the writer flushes every 0.2 s."""
    latencies = []
    writer = IcebergWriter(config, group_id="latency", batch_max_seconds=0.2).start()
    with MarketDataProducer(config) as producer, QueryEngine(config, timeout=10) as engine:
        warm = trades(1, int(time.time() * 1e6) - 1_000_000)[0] | {
            "symbol": "MSFT",
            "asset_class": "equities",
            "trade_id": "warm",
        }
        producer.produce_trade(warm)
        producer.flush(10)
        deadline = time.monotonic() + 60
        while engine.trades("MSFT").num_rows == 0 and time.monotonic() < deadline:  # group join + first table
            time.sleep(0.05)
        for i in range(probes):
            event_us = int(time.time() * 1e6)
            record = {**trades(1, event_us)[0], "symbol": "MSFT", "asset_class": "equities", "trade_id": f"L-{i}"}
            started = time.perf_counter()
            producer.produce_trade(record)
            producer.flush(10)
            while engine.trades("MSFT", event_us, event_us + 1).num_rows == 0:
                if time.perf_counter() - started > 30:
                    raise TimeoutError("a probe trade never became queryable")
            latencies.append(time.perf_counter() - started)
    writer.stop()
    return latencies


def vwap_latency(config: PlatformConfig, rows: int, commits: int, rounds: int) -> dict[str, Any]:
    """`rows` BTC-USD trades in `commits` appends (the writer's shape), then VWAP over all of them."""
    catalog = iceberg_tables.build_catalog(config)
    table = iceberg_tables.open_table(catalog, config.namespace, "trade", "crypto", create=True)
    start = datetime.now(UTC) - timedelta(hours=2)
    per = rows // commits
    schema = iceberg_tables.arrow_schema("trade")
    for c in range(commits):
        n = range(c * per, (c + 1) * per)
        columns = {
            "trade_id": pa.array([f"V-{i}" for i in n]),
            "symbol": pa.array(["BTC-USD"] * per),
            "exchange": pa.array(["COINBASE"] * per),
            "asset_class": pa.array(["crypto"] * per),
            "price": pa.array([f"{50_000 + i % 10_000 / 7:.8f}" for i in n]).cast(pa.decimal128(18, 8)),
            "quantity": pa.array([f"{(1 + i % 97) / 64:.8f}" for i in n]).cast(pa.decimal128(18, 8)),
            "side": pa.array(["BUY"] * per),
            "event_timestamp": pa.array(
                [start + timedelta(microseconds=i * 5000) for i in n], pa.timestamp("us", "UTC")
            ),
            "sequence_number": pa.array(list(n), pa.int64()),
            "trade_conditions": pa.array([[]] * per, schema.field("trade_conditions").type),
            "source_sequence": pa.nulls(per, pa.int64()),
            "kafka_partition": pa.array([0] * per, pa.int32()),
            "kafka_offset": pa.array(list(n), pa.int64()),
        }
        columns["ingest_timestamp"] = columns["event_timestamp"]
        data = pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)
        iceberg_tables.append_with_offsets(table.refresh(), data, {"bench": {0: n.stop}})
    expected = pc.sum(pc.multiply(data.column("price").cast(pa.float64()), data.column("quantity").cast(pa.float64())))
    cold, timings = [], []
    for _ in range(3):  # a fresh engine: nothing cached, every data file read from S3
        with QueryEngine(config, timeout=30) as engine:
            started = time.perf_counter()
            value = engine.vwap("BTC-USD")
            cold.append(time.perf_counter() - started)
    with QueryEngine(config, timeout=30) as engine:
        engine.vwap("BTC-USD")
        for _ in range(rounds):  # the steady state of a dashboard: same engine, files already read once
            started = time.perf_counter()
            engine.vwap("BTC-USD")
            timings.append(time.perf_counter() - started)
    assert expected.as_py() > 0 and value is not None
    return {
        "rows": per * commits, "commits": commits, "vwap": str(value),
        "cold_seconds": summary(cold), "seconds": summary(timings),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phase", choices=["produce", "write"])
    parser.add_argument("--trades", type=int, default=300_000)
    parser.add_argument("--vwap-rows", type=int, default=1_000_000)
    parser.add_argument("--probes", type=int, default=40)
    args = parser.parse_args()
    if args.phase:
        config = PlatformConfig.from_env()
        result = (phase_produce if args.phase == "produce" else phase_write)(config, args.trades)
        print(json.dumps(result))
        return
    with fresh_dir() as data_dir, LocalStack(data_dir) as stack:
        tag = uuid.uuid4().hex[:6]
        config = PlatformConfig.from_endpoints(
            stack.endpoints(), topics=Topics.with_prefix(f"b{tag}"), namespace="bench"
        )
        ensure_topics(config)
        runs = [run_phase("produce", config, args.trades) for _ in range(3)]  # the machine is shared: 3 runs
        produce = sorted(runs, key=lambda r: r["records_per_second"])[1] | {
            "runs_records_per_second": [r["records_per_second"] for r in runs]
        }
        print(f"produce: {produce['records_per_second']:,} trades/s, median of {produce['runs_records_per_second']} "
              f"({produce['caller_cpu_us_per_record']} us CPU each)")  # fmt: skip
        writer = run_phase("write", config, 3 * (args.trades - 1))
        print(f"writer: {writer['rows_per_second']:,} rows/s into Iceberg ({writer['iceberg_commits']} commits)")
        latency_config = config.with_(topics=Topics.with_prefix(f"l{tag}"), namespace="latency")
        ensure_topics(latency_config)
        latencies = end_to_end_latency(latency_config, args.probes)
        lat = summary(latencies)
        print(f"produce -> queryable: median {lat['median'] * 1000:.0f} ms, p99 {lat['p99'] * 1000:.0f} ms")
        vwap = vwap_latency(config.with_(namespace="vwap"), args.vwap_rows, 10, 30)
        print(f"VWAP over {vwap['rows']:,} rows: p50 {vwap['seconds']['median'] * 1000:.0f} ms, "
              f"p99 {vwap['seconds']['p99'] * 1000:.0f} ms; cold (fresh engine) median "
              f"{vwap['cold_seconds']['median'] * 1000:.0f} ms")  # fmt: skip
    results = {
        "produce": produce,
        "writer": writer,
        "end_to_end_seconds": lat,
        "end_to_end_setup": "1 trade produced + flushed, then queried until visible; writer batch_max_seconds=0.2",
        "vwap_query": vwap,
        "targets": {"produce_per_second": 50_000, "vwap_p50_ms": 100},
    }
    print(f"results: {write('platform', results)}")


if __name__ == "__main__":
    main()
