"""The main job's speed: every scenario of both suites on the embedded stack, wall time per scenario and in
total (target: all of them under 5 minutes on 2 cores; the seed quotes 30-60 minutes for its suite).

    .venv/bin/python -m benchmarks.bench_chaos_run                    # -> results/chaos_run.json
    .venv/bin/python -m benchmarks.bench_chaos_run --backend docker   # -> results/chaos_run_docker.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import write


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("local", "docker"), default="local")
    backend = parser.parse_args().backend
    report_dir = Path(tempfile.mkdtemp(prefix="k2-bench-run-"))
    started = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "k2", "chaos", "run", "--seed", "7", "--backend", backend,
                            "--report-dir", str(report_dir)])  # fmt: skip
    total = time.perf_counter() - started
    report = json.loads((report_dir / "report.json").read_text())
    scenarios = {
        s["name"]: {"outcome": s["outcome"], "seconds": round(s["duration_s"], 2)} for s in report["scenarios"]
    }
    results = {
        "exit_status": code,
        "total_wall_seconds": round(total, 1),
        "scenario_seconds_sum": round(sum(s["seconds"] for s in scenarios.values()), 1),
        "scenarios": scenarios,
        "seed": report["seed"],
        "backend": report["backend"],
    }
    path = write("chaos_run" if backend == "local" else f"chaos_run_{backend}", results)
    print(f"k2 chaos run: {len(scenarios)} scenarios in {total:.0f} s wall (exit {code}) -> {path}")


if __name__ == "__main__":
    main()
