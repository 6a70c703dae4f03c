"""Network faults through the stack's fault proxy: time to inject and to restore a full partition
(refuse), a black-hole partition and a latency toxic, median and p99 over 50 trials each, verification
included (the health probe of the service must stop or keep answering as the fault says).

    .venv/bin/python -m benchmarks.bench_faults_network
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import fresh_dir, summary, write
from k2.stack import LocalStack
from k2.testing.targets import health_probes, proxy_targets

TRIALS = 50


def measure(inject: Any, restore: Any) -> dict[str, Any]:
    injected, restored = [], []
    for _ in range(TRIALS):
        started = time.perf_counter()
        inject()
        injected.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        restore()
        restored.append((time.perf_counter() - started) * 1000)
    return {"inject_ms": summary(injected), "restore_ms": summary(restored)}


def main() -> None:
    with fresh_dir() as data_dir, LocalStack(data_dir) as stack:
        target = proxy_targets(stack)["schema-registry"]
        probe = health_probes(stack)["schema-registry"]
        results = {
            "partition_refuse": measure(lambda: target.isolate("refuse", probe=probe), target.rejoin),
            "partition_blackhole": measure(lambda: target.isolate("blackhole", probe=probe), target.rejoin),
            "latency_100ms": measure(lambda: target.shape("latency", attributes={"latency": 100}), target.unshape),
        }
    path = write("faults_network", {"trials": TRIALS, "target": "schema-registry via the fault proxy", **results})
    for name, r in results.items():
        print(f"{name:22} inject median {r['inject_ms']['median']:7.2f} ms p99 {r['inject_ms']['p99']:7.2f} ms   "
              f"restore median {r['restore_ms']['median']:6.2f} ms p99 {r['restore_ms']['p99']:6.2f} ms")  # fmt: skip
    print(f"-> {path}")


if __name__ == "__main__":
    main()
