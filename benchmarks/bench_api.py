"""The query API (the stack's `api` service): request latency straight to its port vs through the fault
proxy (the address clients get), a refused (429) request, and the circuit breaker's fail-fast answer while
S3 is stopped, median and p99 over sequential keep-alive requests. 1,000 trades are in Iceberg first.

    .venv/bin/python -m benchmarks.bench_api
"""

from __future__ import annotations

import random
import time
from typing import Any

import httpx

from benchmarks.common import fresh_dir, summary, write
from k2.platform.config import PlatformConfig, Topics, ensure_topics
from k2.platform.producer import MarketDataProducer
from k2.platform.writer import IcebergWriter
from k2.scenarios.records import TradeFactory
from k2.stack import LocalStack

REQUESTS = 300
ROWS = 1_000


def load_trades(config: PlatformConfig) -> None:
    ensure_topics(config)
    writer = IcebergWriter(config, group_id="bench-api", batch_max_seconds=0.3, assign_all=True)
    writer.start()
    factory = TradeFactory(random.Random(7), run_tag="bench")
    with MarketDataProducer(config) as producer:
        for _ in range(ROWS):
            producer.produce_trade(factory("BTC-USD"))
        assert producer.flush(30) == 0
    deadline = time.monotonic() + 120
    while writer.health().rows_written < ROWS and time.monotonic() < deadline:
        time.sleep(0.1)
    writer.stop(timeout=60)


def timed(client: httpx.Client, path: str, n: int, status: int, **headers: str) -> dict[str, Any]:
    elapsed = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        elapsed.append((time.perf_counter() - started) * 1000)
        assert response.status_code == status, response.text
    return summary(elapsed)


def main() -> None:
    with fresh_dir() as data_dir, LocalStack(data_dir) as stack:
        config = PlatformConfig.from_endpoints(stack.endpoints(), topics=Topics.with_prefix("bench"), namespace="bench")
        load_trades(config)
        svc = stack.state().services["api"]
        vwap = "/v1/vwap?symbol=BTC-USD&namespace=bench"
        results: dict[str, Any] = {}
        for route, address in (("direct", svc.listen), ("through the proxy", svc.advertised)):
            with httpx.Client(base_url=f"http://{address}", timeout=30) as client:
                for i in range(50):  # warm: engine, scan caches, connections
                    client.get(vwap, headers={"X-Client-Id": f"warm{i}"})
                results[route] = {
                    "health_ms": timed(client, "/health", REQUESTS, 200),
                    # one client id per request: the limiter must not refuse the benchmark itself
                    "vwap_ms": summary([_one(client, vwap, f"c{i}") for i in range(REQUESTS)]),
                }
        with httpx.Client(base_url=f"http://{svc.advertised}", timeout=30) as client:
            # a flood of cheap requests (400 when admitted) from one client: time the refused ones
            refused: list[float] = []
            for _ in range(REQUESTS * 3):
                started = time.perf_counter()
                response = client.get("/v1/vwap", headers={"X-Client-Id": "flood"})
                if response.status_code == 429:
                    refused.append((time.perf_counter() - started) * 1000)
                if len(refused) >= REQUESTS // 3:
                    break
            results["rate_limited_429_ms"] = summary(refused)
            stack.stop_service("s3")
            try:
                opened = []
                for i in range(10):
                    opened.append(client.get(vwap + "&timeout=1", headers={"X-Client-Id": f"o{i}"}))
                    if opened[-1].json().get("error", {}).get("code") == "circuit_open":
                        break
                results["requests_until_open"] = len(opened)
                fast = []  # circuit_open answers only: a half-open probe in between goes to storage
                for i in range(100):
                    started = time.perf_counter()
                    response = client.get(vwap, headers={"X-Client-Id": f"f{i}"})
                    if response.json().get("error", {}).get("code") == "circuit_open":
                        fast.append((time.perf_counter() - started) * 1000)
                results["circuit_open_503_ms"] = summary(fast)
            finally:
                stack.start_service("s3")
    path = write("api", {"requests": REQUESTS, "rows": ROWS, **results})
    for route in ("direct", "through the proxy"):
        r = results[route]
        print(f"{route:18} health p50 {r['health_ms']['median']:6.2f} p99 {r['health_ms']['p99']:6.2f} ms   "
              f"vwap p50 {r['vwap_ms']['median']:6.2f} p99 {r['vwap_ms']['p99']:6.2f} ms")  # fmt: skip
    print(f"429 p50 {results['rate_limited_429_ms']['median']:.2f} ms; circuit open (503) p50 "
          f"{results['circuit_open_503_ms']['median']:.2f} ms p99 {results['circuit_open_503_ms']['p99']:.2f} ms "
          f"after {results['requests_until_open']} requests")  # fmt: skip
    print(f"-> {path}")


def _one(client: httpx.Client, path: str, client_id: str, status: int = 200) -> float:
    started = time.perf_counter()
    response = client.get(path, headers={"X-Client-Id": client_id})
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == status, response.text
    return elapsed


if __name__ == "__main__":
    main()
