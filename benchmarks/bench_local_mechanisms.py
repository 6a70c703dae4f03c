"""The local mechanisms side by side, in one run: inject / restore time of pause and of CPU + memory caps
with each mechanism this machine has (cgroup v1, the cgroup v2 freezer, SIGSTOP, duty-cycle, rlimit), and
how closely the duty-cycle loop holds a busy process to its cap (and what the loop itself costs).

Target for the timings: a 3-process tree (sh + 2 x sleep). For the cap: one busy loop, capped at 20% and
50% of a core, its share measured from its CPU clock over 2 s windows.

    .venv/bin/python -m benchmarks.bench_local_mechanisms
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

from benchmarks.common import summary, write
from k2.chaos.effects import Effect
from k2.chaos.local.dutycycle import cpu_ns, tree_cpu_ns
from k2.chaos.targets.base import wait_until
from k2.chaos.targets.process import ProcessSpec, ProcessTarget

TRIALS = 30
CAP_WINDOWS = 5
RUN_ID = f"bench-{uuid.uuid4().hex[:8]}"
POLICIES = {"cgroup-v1": "v1", "cgroup-v2 freezer + fallbacks": "v2", "signals and rlimits": "none"}


def ms(values: list[float]) -> dict[str, float]:
    return {k: (round(v * 1000, 3) if k != "n" else v) for k, v in summary(values).items()}


def cycle(inject: Callable[[], Effect], restore: Callable[[], Effect]) -> dict[str, object]:
    ins, outs, mechanism = [], [], None
    for _ in range(TRIALS):
        t0 = time.perf_counter()
        effect = inject()
        t1 = time.perf_counter()
        restore()
        outs.append(time.perf_counter() - t1)
        ins.append(t1 - t0)
        named = {"freeze": getattr(effect, "mechanism", None), "cpu": getattr(effect, "cpu_mechanism", None),
                 "memory": getattr(effect, "mem_mechanism", None)}  # fmt: skip
        mechanism = {k: v for k, v in named.items() if v}
    return {"mechanism": mechanism, "inject_ms": ms(ins), "restore_ms": ms(outs)}


def target(pid: int, policy: str) -> ProcessTarget:
    os.environ["K2_CGROUP"] = policy
    made = ProcessTarget(ProcessSpec.for_pid("tree", pid, run_id=RUN_ID))
    made.describe()  # the choice is made (and kept) now, under this policy
    return made


def cap_accuracy(busy: subprocess.Popen[bytes], quota: int) -> dict[str, object]:
    capped = target(busy.pid, "none")
    effect = capped.limit(cpu_quota=quota)
    loop = effect.detail["cpu"]["loop_pid"]
    shares, loop_start = [], cpu_ns(loop) or 0
    wall0 = time.monotonic_ns()
    for _ in range(CAP_WINDOWS):
        before, t0 = tree_cpu_ns(capped.members()), time.monotonic_ns()
        time.sleep(2.0)  # a measurement window, not a synchronisation
        shares.append((tree_cpu_ns(capped.members()) - before) / (time.monotonic_ns() - t0))
    loop_cost = ((cpu_ns(loop) or loop_start) - loop_start) / (time.monotonic_ns() - wall0)
    restored = capped.unlimit().detail["cpu"]
    return {
        "cap": quota / 100_000,
        "share_per_2s_window": summary(shares),
        "loop_cpu_share": round(loop_cost, 4),
        "loop_saw": {k: restored[k] for k in ("cpu_share", "within_tolerance", "counters")},
    }


def main() -> None:
    tree = subprocess.Popen(["sh", "-c", "sleep 3600 & sleep 3600 & wait"], start_new_session=True)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    results: dict[str, object] = {"trials": TRIALS}
    try:
        assert wait_until(lambda: len(ProcessTarget(ProcessSpec.for_pid("t", tree.pid)).members()) == 3, 5.0)
        for label, policy in POLICIES.items():
            t = target(tree.pid, policy)
            limit = t.limit
            results[label] = {
                "pause_resume": cycle(t.pause, t.resume),
                "limit_unlimit_cpu_mem": cycle(lambda: limit(cpu_quota=50_000, mem_limit="512m"), t.unlimit),  # noqa: B023
            }
        before, t0 = cpu_ns(busy.pid) or 0, time.monotonic_ns()
        time.sleep(2.0)  # a measurement window, not a synchronisation
        uncapped = ((cpu_ns(busy.pid) or 0) - before) / (time.monotonic_ns() - t0)
        results["busy_loop_uncapped_share"] = round(uncapped, 4)
        results["duty_cycle"] = [cap_accuracy(busy, quota) for quota in (20_000, 50_000)]
        results["load_average"] = os.getloadavg()
    finally:
        for proc in (tree, busy):
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    path = write("local_mechanisms", results)
    print(f"{'mechanisms':<32}{'fault':<24}{'inject median/p99 ms':>22}{'restore median/p99 ms':>24}")
    for label in POLICIES:
        for fault, r in results[label].items():  # type: ignore[attr-defined]
            i, o = r["inject_ms"], r["restore_ms"]
            times = f"{i['median']:>10.2f} / {i['p99']:<9.2f}{o['median']:>12.2f} / {o['p99']:<9.2f}"
            print(f"{label:<32}{fault:<24}{times}")
    for cap in results["duty_cycle"]:  # type: ignore[attr-defined]
        share = cap["share_per_2s_window"]
        print(f"duty-cycle cap {cap['cap']:.0%}: median share {share['median']:.3f} (max {share['max']:.3f}), "
              f"loop costs {cap['loop_cpu_share']:.3f} of a core")  # fmt: skip
    print(f"uncapped busy loop: {results['busy_loop_uncapped_share']}; load {results['load_average']}   -> {path}")


if __name__ == "__main__":
    main()
