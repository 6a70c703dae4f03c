"""clock_skew on the stack: time to inject and to restore a one-hour skew, verification included (an armed
reader, the service's /proc maps, and the service's own clock: PostgreSQL's clock_timestamp(), the API's
HTTP Date header), median and p99 over 20 trials per domain; and what a wall-clock read costs an armed process.

    .venv/bin/python -m benchmarks.bench_clock
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from benchmarks.common import fresh_dir, summary, write
from k2.stack import LocalStack
from k2.stack.clocks import clock_probes, clock_targets

TRIALS = 20
READS = (
    "import time\nn=200000\nt=time.perf_counter()\nfor _ in range(n): time.time()\nprint((time.perf_counter()-t)/n*1e9)"
)


def main() -> None:
    with fresh_dir() as data_dir, LocalStack(data_dir) as stack:
        targets, probes = clock_targets(stack), clock_probes(stack)
        results: dict[str, Any] = {}
        for name in ("postgres", "api", "writer"):
            target, probe = targets[name], probes.get(name)
            options = {"probe": probe} if probe else {}
            injected, restored = [], []
            for _ in range(TRIALS):
                started = time.perf_counter()
                target.skew_clock(3600, **options)
                injected.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                target.unskew(**options)
                restored.append((time.perf_counter() - started) * 1000)
            results[name] = {"inject_ms": summary(injected), "restore_ms": summary(restored),
                             "verified_by": "reader + " + ("service clock" if probe else "none else")}  # fmt: skip
        plain = _ns_per_read({})
        armed = _ns_per_read(stack.clock_env("reader"))
        results["wall_clock_read_ns"] = {"unarmed": plain, "armed": armed}
    path = write("clock", {"trials": TRIALS, **results})
    for name in ("postgres", "api", "writer"):
        r = results[name]
        print(f"{name:9} inject median {r['inject_ms']['median']:7.1f} ms p99 {r['inject_ms']['p99']:7.1f} ms   "
              f"restore median {r['restore_ms']['median']:7.1f} ms p99 {r['restore_ms']['p99']:7.1f} ms")  # fmt: skip
    print(f"time.time(): {plain:.0f} ns unarmed, {armed:.0f} ns armed")
    print(f"-> {path}")


def _ns_per_read(env: dict[str, str]) -> float:
    done = subprocess.run([sys.executable, "-c", READS], env={**os.environ, **env}, capture_output=True, text=True,
                          check=True)  # fmt: skip
    return float(done.stdout)


if __name__ == "__main__":
    main()
