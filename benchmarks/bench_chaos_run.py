"""The main job's speed: every scenario of both suites on the embedded stack, wall time per scenario and in
total (target: all of them under 5 minutes on 2 cores; the seed quotes 30-60 minutes for its suite).

    .venv/bin/python -m benchmarks.bench_chaos_run                    # -> results/chaos_run.json (2 stacks at once)
    .venv/bin/python -m benchmarks.bench_chaos_run --parallel 1       # -> results/chaos_run_one_stack.json
    .venv/bin/python -m benchmarks.bench_chaos_run --backend docker   # -> results/chaos_run_docker.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import write


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("local", "docker"), default="local")
    parser.add_argument("--parallel", type=int, default=None, help="stacks at once (default: k2 chaos run's)")
    args = parser.parse_args()
    backend, parallel = args.backend, args.parallel
    report_dir = Path(tempfile.mkdtemp(prefix="k2-bench-run-"))
    loads: list[float] = []  # the 1-minute load average every 10 s: the machine is shared, so say how busy it was
    done = threading.Event()

    def sample() -> None:
        while True:
            loads.append(os.getloadavg()[0])
            if done.wait(10):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    stacks = [f"--parallel={parallel}"] if parallel else []
    code = subprocess.call([sys.executable, "-m", "k2", "chaos", "run", "--seed", "7", "--backend", backend,
                            "--report-dir", str(report_dir), *stacks])  # fmt: skip
    total = time.perf_counter() - started
    done.set()
    sampler.join()
    report = json.loads((report_dir / "report.json").read_text())
    scenarios = {
        s["name"]: {"outcome": s["outcome"], "seconds": round(s["duration_s"], 2)} for s in report["scenarios"]
    }
    load = {"min": min(loads), "median": round(statistics.median(loads), 2), "max": max(loads), "samples": len(loads)}
    results = {
        "exit_status": code,
        "total_wall_seconds": round(total, 1),
        "scenario_seconds_sum": round(sum(s["seconds"] for s in scenarios.values()), 1),
        "load_average_1min": load,
        "scenarios": scenarios,
        "seed": report["seed"],
        "backend": report["backend"],
        "parallel": parallel if parallel else "default",
    }
    name = "chaos_run" if backend == "local" else f"chaos_run_{backend}"
    path = write(f"{name}_one_stack" if parallel == 1 and backend == "local" else name, results)
    print(f"k2 chaos run: {len(scenarios)} scenarios in {total:.0f} s wall (exit {code}) -> {path}")


if __name__ == "__main__":
    main()
