"""Local process faults: time to inject and to restore each primitive, and how long after a runner
is SIGKILLed its watchdog has restored the fault.

Target: a 3-process tree (sh + 2 x sleep) for pause/limit; a `sleep` restarted by a Python restart
script that writes a state file for stop/start and kill/start (so "start" includes a Python
interpreter start-up, ~30-60 ms, which a real service's start would dwarf).

    .venv/bin/python -m benchmarks.bench_faults_local
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import summary, write
from k2.chaos.effects import Effect
from k2.chaos.journal import Journal
from k2.chaos.targets.base import wait_until
from k2.chaos.targets.process import ProcessSpec, ProcessTarget, proc_stat, send_signal

TRIALS = 100
RESTART_TRIALS = 50
WATCHDOG_TRIALS = 10
RUN_ID = f"bench-{uuid.uuid4().hex[:8]}"

RESTART = """
    import json, os, subprocess, sys
    svc = subprocess.Popen(["sleep", "3600"], start_new_session=True, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stat = open(f"/proc/{svc.pid}/stat").read()
    start = int(stat[stat.rindex(")") + 2:].split()[19])
    with open(sys.argv[1] + ".tmp", "w") as f:
        json.dump({"services": {"svc": {"pid": svc.pid, "starttime": start}}}, f)
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
"""

RUNNER = """
    import json, sys, time
    from k2.chaos.journal import Journal
    from k2.chaos.targets.process import ProcessTarget
    from k2.chaos.watchdog import Watchdog
    watchdog = Watchdog.start(sys.argv[2])
    Journal(sys.argv[2]).inject(ProcessTarget(json.loads(sys.argv[1])), "pause")
    print("paused", flush=True)
    time.sleep(120)
"""


def ms(values: list[float]) -> dict[str, float]:
    return {k: (round(v * 1000, 3) if k != "n" else v) for k, v in summary(values).items()}


def cycle(inject: Callable[[], Effect], restore: Callable[[], Effect], trials: int) -> dict[str, object]:
    ins, outs = [], []
    for _ in range(trials):
        t0 = time.perf_counter()
        inject()
        t1 = time.perf_counter()
        restore()
        outs.append(time.perf_counter() - t1)
        ins.append(t1 - t0)
    return {"inject_ms": ms(ins), "restore_ms": ms(outs)}


def watchdog_latency(tree: ProcessTarget, tmp: Path) -> dict[str, object]:
    latencies, recover_s = [], []
    spec = json.dumps(tree.describe()["spec"])
    for trial in range(WATCHDOG_TRIALS):
        journal = tmp / f"watchdog-{trial}.jsonl"
        runner = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(RUNNER), spec, str(journal)],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert runner.stdout is not None and runner.stdout.readline() == b"paused\n"
        assert proc_stat(tree.pid or 0).state == "D"  # type: ignore[union-attr]
        t0 = time.perf_counter()
        runner.kill()
        assert wait_until(lambda: proc_stat(tree.pid or 0).state != "D", 10.0, cap=0.001)  # type: ignore[union-attr]
        latencies.append(time.perf_counter() - t0)
        runner.wait()
        log = journal.with_name(journal.name + ".watchdog.log")
        assert wait_until(lambda: "recover_s" in log.read_text(), 10.0)  # noqa: B023
        recover_s.append(json.loads(log.read_text().splitlines()[-1].split(": ", 1)[1])["recover_s"])
    return {"sigkill_to_thawed_ms": ms(latencies), "watchdog_recover_call_ms": ms(recover_s)}


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="k2-bench-faults-"))
    tree_proc = subprocess.Popen(["sh", "-c", "sleep 3600 & sleep 3600 & wait"], start_new_session=True)
    script, state = tmp / "restart.py", tmp / "stack.json"
    script.write_text(textwrap.dedent(RESTART))
    argv = [sys.executable, str(script), str(state)]
    restartable: ProcessTarget | None = None
    try:
        assert wait_until(lambda: len(ProcessTarget(ProcessSpec.for_pid("t", tree_proc.pid)).members()) == 3, 5.0)
        tree = ProcessTarget(ProcessSpec.for_pid("tree", tree_proc.pid, run_id=RUN_ID))
        results: dict[str, object] = {"processes_on_machine": sum(1 for p in os.listdir("/proc") if p.isdigit())}
        results["pause_resume"] = cycle(tree.pause, tree.resume, TRIALS)
        results["limit_unlimit_cpu_mem"] = cycle(
            lambda: tree.limit(cpu_quota=50_000, mem_limit="512m"), tree.unlimit, TRIALS
        )
        with Journal(tmp / "journal.jsonl") as journal:
            ids: list[str] = []
            results["journaled_pause_resume"] = cycle(
                lambda: (ids.append((r := journal.inject(tree, "pause"))[0]), r[1])[1],
                lambda: journal.restore(ids[-1], tree),
                TRIALS,
            )
        subprocess.run(argv, check=True, timeout=30)
        first = json.loads(state.read_text())["services"]["svc"]
        restartable = ProcessTarget(
            ProcessSpec.from_dict(
                {"name": "svc", **first, "restart_argv": argv, "state_file": str(state), "run_id": RUN_ID}
            )
        )
        results["stop_start"] = cycle(restartable.stop, restartable.start, RESTART_TRIALS)
        results["kill_start"] = cycle(restartable.kill, restartable.start, RESTART_TRIALS)
        results["watchdog"] = watchdog_latency(tree, tmp)
        results["trials"] = {"pause/limit": TRIALS, "stop/kill/start": RESTART_TRIALS, "watchdog": WATCHDOG_TRIALS}
    finally:
        os.killpg(tree_proc.pid, signal.SIGKILL)
        tree_proc.wait()
        if restartable is not None and restartable.pid and restartable.starttime:
            send_signal(restartable.pid, restartable.starttime, signal.SIGKILL)
    path = write("faults_local", results)
    print(f"{'primitive':<26}{'inject median/p99 ms':>24}{'restore median/p99 ms':>26}")
    for name in ("pause_resume", "limit_unlimit_cpu_mem", "journaled_pause_resume", "stop_start", "kill_start"):
        r = results[name]
        assert isinstance(r, dict)
        i, o = r["inject_ms"], r["restore_ms"]
        print(f"{name:<26}{i['median']:>12.2f} / {i['p99']:<9.2f}{o['median']:>14.2f} / {o['p99']:<9.2f}")
    wd = results["watchdog"]
    assert isinstance(wd, dict)
    print(
        f"watchdog: runner SIGKILL -> target thawed: median {wd['sigkill_to_thawed_ms']['median']:.1f} ms, "
        f"max {wd['sigkill_to_thawed_ms']['max']:.1f} ms over {WATCHDOG_TRIALS}   -> {path}"
    )


if __name__ == "__main__":
    main()
