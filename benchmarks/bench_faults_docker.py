"""Docker faults: time to inject and to restore each primitive on a container of the local Tansu
image, next to the local process backend's numbers (benchmarks/results/faults_local.json), and how
long after a runner is SIGKILLed its watchdog has unpaused the container.

Every primitive includes its own verification (inspect read-backs; isolate also tries TCP
connections to the former addresses, each waiting up to `verify_timeout`=0.3 s for an answer that
must not come, which dominates its inject time). "start" waits for the container's health check
(every 0.3 s here), so stop/start and kill/start run fewer trials.

    .venv/bin/python -m benchmarks.bench_faults_docker
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.docker.helpers import Lab, ensure_images, require_docker

from benchmarks.common import RESULTS, summary, write
from k2.chaos.effects import Effect
from k2.chaos.journal import Journal
from k2.chaos.targets.base import wait_until
from k2.chaos.targets.docker import DockerTarget

TRIALS = 30
ISOLATE_TRIALS = 20
RESTART_TRIALS = 10
WATCHDOG_TRIALS = 5
HOLD_S = 1.0  # the runner dies while holding the fault, not the instant it injected it

RUNNER = """
import sys, time
from k2.chaos.journal import Journal
from k2.chaos.targets.docker import DockerTarget
from k2.chaos.watchdog import Watchdog
watchdog = Watchdog.start(sys.argv[2], preload=("docker",))  # as a ChaosSession with docker targets does
Journal(sys.argv[2]).inject(DockerTarget.find("kafka", project=sys.argv[1]), "pause")
print("paused", flush=True)
time.sleep(120)
"""


def ms(values: list[float]) -> dict[str, float]:
    return {k: (round(v * 1000, 3) if k != "n" else v) for k, v in summary(values).items()}


def cycle(inject: Callable[[], Effect], restore: Callable[[], Effect], trials: int) -> dict[str, Any]:
    ins, outs = [], []
    for _ in range(trials):
        t0 = time.perf_counter()
        inject()
        t1 = time.perf_counter()
        restore()
        outs.append(time.perf_counter() - t1)
        ins.append(t1 - t0)
    return {"inject_ms": ms(ins), "restore_ms": ms(outs), "trials": trials}


def watchdog_latency(lab: Lab, container: Any, tmp: Path) -> dict[str, Any]:
    latencies = []
    for trial in range(WATCHDOG_TRIALS):
        journal = tmp / f"watchdog-{trial}.jsonl"
        runner = subprocess.Popen([sys.executable, "-c", RUNNER, lab.project, str(journal)], stdout=subprocess.PIPE)
        assert runner.stdout is not None
        ready, _, _ = select.select([runner.stdout], [], [], 60)
        assert ready and runner.stdout.readline() == b"paused\n", "the runner did not pause the container"
        time.sleep(HOLD_S)
        t0 = time.perf_counter()
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()

        def unpaused() -> bool:
            container.reload()
            return not container.attrs["State"]["Paused"]

        assert wait_until(unpaused, 30, cap=0.005), "the watchdog did not unpause the container"
        latencies.append(time.perf_counter() - t0)
    return {"sigkill_to_unpaused_ms": ms(latencies), "trials": WATCHDOG_TRIALS}


def main() -> None:
    client = require_docker()
    ensure_images(client)
    lab = Lab(client, project=f"k2bench-{os.getpid()}")
    tmp = Path(tempfile.mkdtemp(prefix="k2-bench-docker-"))
    results: dict[str, Any] = {"engine": client.version().get("Version")}
    try:
        net = lab.network()
        volume = lab.volume("64m")
        container, _ = lab.tansu(net, host_config={"binds": {volume.name: {"bind": "/data", "mode": "rw"}}})
        lab.wait_healthy(container)
        target = DockerTarget.find("kafka", project=lab.project)
        results["pause_resume"] = cycle(target.pause, target.resume, TRIALS)
        results["limit_unlimit_cpu_mem"] = cycle(
            lambda: target.limit(cpu_quota=50_000, mem_limit="512m"), target.unlimit, TRIALS
        )
        with Journal(tmp / "journal.jsonl") as journal:
            ids: list[str] = []
            results["journaled_pause_resume"] = cycle(
                lambda: (ids.append((r := journal.inject(target, "pause"))[0]), r[1])[1],
                lambda: journal.restore(ids[-1], target),
                TRIALS,
            )
        disconnects: list[float] = []

        def isolate() -> Effect:
            effect = target.isolate()
            disconnects.append(effect.detail["disconnect_s"])
            return effect

        results["isolate_rejoin"] = cycle(isolate, target.rejoin, ISOLATE_TRIALS)
        results["isolate_rejoin"]["disconnect_only_ms"] = ms(disconnects)
        results["fill_free_disk_16m"] = cycle(lambda: target.fill_disk(size="16m"), target.free_disk, TRIALS)
        results["stop_start"] = cycle(lambda: target.stop(timeout=10), target.start, RESTART_TRIALS)
        results["kill_start"] = cycle(target.kill, target.start, RESTART_TRIALS)
        results["watchdog"] = watchdog_latency(lab, container, tmp)
    finally:
        lab.cleanup()
    path = write("faults_docker", results)
    local_path = RESULTS / "faults_local.json"
    local = json.loads(local_path.read_text()) if local_path.exists() else {}
    print(f"{'primitive':<24}{'docker inject':>20}{'docker restore':>20}{'local inject':>18}{'local restore':>18}  n")
    print(f"{'(median / p99 ms)':<24}")
    for name in ("pause_resume", "journaled_pause_resume", "limit_unlimit_cpu_mem", "isolate_rejoin",
                 "fill_free_disk_16m", "stop_start", "kill_start"):  # fmt: skip
        d, lo = results[name], local.get(name)
        keys = ("inject_ms", "restore_ms")
        cells = [f"{d[k]['median']:>9.1f} /{d[k]['p99']:>8.1f}" for k in keys]
        cells += [f"{lo[k]['median']:>7.1f} /{lo[k]['p99']:>8.1f}" if lo else f"{'-':>16}" for k in keys]
        print(f"{name:<24}{cells[0]:>20}{cells[1]:>20}{cells[2]:>18}{cells[3]:>18}  {d['trials']}")
    print(f"isolate without its 0.3 s no-answer check (disconnect only): median "
          f"{results['isolate_rejoin']['disconnect_only_ms']['median']:.1f} ms")  # fmt: skip
    wd, lwd = results["watchdog"], local.get("watchdog", {})
    local_wd = lwd.get("sigkill_to_thawed_ms", {}).get("median")
    print(f"watchdog: runner SIGKILL -> container unpaused: median {wd['sigkill_to_unpaused_ms']['median']:.1f} ms, "
          f"max {wd['sigkill_to_unpaused_ms']['max']:.1f} ms over {WATCHDOG_TRIALS} (local backend: median "
          f"{local_wd} ms)   -> {path}")  # fmt: skip


if __name__ == "__main__":
    main()
