"""What K2 watching costs the pipeline: its throughput with explore's ledger, meter and probes on (no faults),
against the same workload without K2 watching.

Both sides produce trades as fast as the platform's producer takes them for `--seconds`, with the same writers
consuming into Iceberg, queries off (they are workload, not watching). Watched = `ExploreRun` (every trade in the
ledger before it is sent, an outcome observer, the per-second meter, the probes sampled every second, the lag
probe asking the broker for the writers' offsets); bare = the platform's producer with no observer. Sides
alternate, `--repeat` times each, on one stack; medians and their ratio are reported.

    .venv/bin/python -m benchmarks.bench_explore_overhead      # -> results/explore_overhead.json
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from typing import Any

from benchmarks.common import fresh_dir, write
from k2.explore.run import ExploreRun
from k2.explore.schedule import Workload
from k2.explore.writers import committed_offsets, default_writers
from k2.platform.config import PlatformConfig, Topics, ensure_topics

FLAT_OUT = 100_000  # trades a second asked of the paced loop: more than the producer takes
NO_QUERIES = 3600.0


def watched(stack: Any, seconds: float) -> dict[str, float]:
    run = ExploreRun(
        stack,
        seed=1,
        duration_s=seconds,
        warmup_s=1.0,
        drain_timeout_s=120.0,
        workload=Workload(rate=FLAT_OUT, query_interval_s=NO_QUERIES),
        writers=default_writers()[0],
    )
    with run:
        run.until(seconds)
    verdict = run.verdict()
    acked = verdict.check.counts["acknowledged"] if verdict.check else 0
    drained = seconds + run.data.phases.get("stop_traffic", 0.0) + (run.data.drain.waited_s if run.data.drain else 0)
    return {"acked_per_s": acked / seconds, "end_to_end_per_s": acked / drained, "outcome": verdict.signature}


def bare(stack: Any, seconds: float) -> dict[str, float]:
    from k2.platform.producer import MarketDataProducer
    from k2.scenarios.records import TradeFactory

    tag = uuid.uuid4().hex[:8]
    config = PlatformConfig.from_endpoints(
        stack.endpoints(), topics=Topics.with_prefix(f"bare{tag}"), namespace=f"bare{tag}"
    )
    ensure_topics(config)
    writers = default_writers()[0](config, f"bare-{tag}", 2, None)
    writers.start()
    try:
        trades = TradeFactory(random.Random(1), run_tag=tag)
        producer = MarketDataProducer(config, kafka_overrides={"client.id": "producer"})
        sent, began = 0, time.monotonic()
        while time.monotonic() - began < seconds:
            producer.produce_trade(trades())
            sent += 1
            if sent % 1000 == 0:
                producer.poll(0)
        left = producer.close(60.0)
        acked = sent - left - producer.stats["failed"] - producer.stats["unknown"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            committed = committed_offsets(config, writers.group_id, config.topics.trades, [0, 1, 2], 5.0)
            if sum(max(0, o) for o in committed.values()) >= acked:  # offsets count records: no gaps, no dups
                break
            time.sleep(0.25)
        drained = time.monotonic() - began
    finally:
        writers.close()
    return {"acked_per_s": acked / seconds, "end_to_end_per_s": acked / drained, "outcome": "n/a"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows: dict[str, list[dict[str, float]]] = {"bare": [], "watched": []}
    from k2.stack import LocalStack

    with fresh_dir() as data_dir:
        stack = LocalStack(data_dir)
        stack.up()
        try:
            for i in range(args.repeat):
                for side, measure in (("bare", bare), ("watched", watched)):
                    rows[side].append(measure(stack, args.seconds))
                    print(f"{side} #{i + 1}: {rows[side][-1]}", flush=True)
        finally:
            stack.down()
    med = {
        side: {k: statistics.median(r[k] for r in rs) for k in ("acked_per_s", "end_to_end_per_s")}
        for side, rs in rows.items()
    }
    results = {
        "seconds": args.seconds,
        "repeat": args.repeat,
        "runs": rows,
        "median": med,
        "ratio_watched_to_bare": {k: round(med["watched"][k] / med["bare"][k], 3) for k in med["bare"]},
    }
    print(results["median"], results["ratio_watched_to_bare"])
    print(write("explore_overhead", results))


if __name__ == "__main__":
    main()
