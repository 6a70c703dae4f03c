"""How far K2's fault proxy is from the floors of this machine and of its language, for the two rows of
`bench_proxy` where it is behind its goal: bulk at 0.8x of direct, and idle memory.

- Bulk: direct loopback, K2's daemon, and a C proxy that does nothing but copy (`floor_proxy.c`: `read`/`write`
  through a 1 MiB buffer, or `splice` through a pipe; a thread per direction), 512 MiB each, interleaved (the
  order rotates every repetition), with each proxy's CPU per GB. The C copy proxy is what K2's fast path
  would be without the interpreter: what it reaches is what the machine allows a proxy.
- Idle RSS: an interpreter that imports nothing (with and without `site`), one that imports only `socket`
  (the least a proxy in Python needs), K2's daemon, the C proxy, and, given `--toxiproxy PATH`, Toxiproxy:
  each started, ready, and measured once it waits.

    .venv/bin/python -m benchmarks.bench_proxy_floors [--reps 10] [--toxiproxy PATH]

Needs a C compiler (`cc`); writes benchmarks/results/proxy_floors.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks import proxy_load as load
from benchmarks.bench_proxy import spread
from benchmarks.proxy_targets import ApiProxy, free_port, proc_cpu_seconds, proc_rss_mib, stop, wait_listening

SOURCE = Path(__file__).with_name("floor_proxy.c")
WAITER = "import sys; print('ready', flush=True); sys.stdin.read()"  # an interpreter that imports nothing
SOCKET_WAITER = "import socket, sys; print('ready', flush=True); sys.stdin.read()"  # the least any proxy imports


def build(directory: Path) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        sys.exit("bench_proxy_floors: no C compiler (cc) to build floor_proxy.c; install gcc and run it again")
    binary = directory / "floor_proxy"
    subprocess.run([compiler, "-O2", "-pthread", "-o", str(binary), str(SOURCE)], check=True, timeout=120)
    return binary


class CProxy:
    def __init__(self, binary: Path, mode: str, upstream_port: int) -> None:
        port = free_port()
        self.process = subprocess.Popen([str(binary), mode, str(port), str(upstream_port)])
        self.pid = self.process.pid
        self.address = ("127.0.0.1", port)
        try:
            wait_listening(self.address)
        except TimeoutError:
            self.close()
            raise

    def close(self) -> None:
        stop(self.process)


def user_cpu_seconds(pid: int) -> float:
    """The user-space part of a process's CPU time (`proc_cpu_seconds` is user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK")


def idle_rss_mib(argv: list[str]) -> float:
    """RSS of an interpreter that has started and waits on stdin."""
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{argv} did not start")
        return proc_rss_mib(process.pid)
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=_at_least_one, default=10, help="interleaved bulk repetitions")
    parser.add_argument("--bulk-mib", type=_at_least_one, default=512, help="MiB per bulk transfer")
    parser.add_argument("--toxiproxy", help="path of a toxiproxy-server binary, for its idle RSS")
    args = parser.parse_args()
    load_before = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="k2-bench-floors-"))
    serve = [sys.executable, "-m", "benchmarks.bench_proxy", "--serve"]  # the counting sink, a process of its own
    server = subprocess.Popen(serve, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    proxies: list[Any] = []
    try:
        binary = build(scratch)
        assert server.stdout is not None
        sink_port = int(server.stdout.readline().split()[1])
        sink = ("127.0.0.1", sink_port)
        k2 = ApiProxy.k2()
        proxies.append(k2)
        rss = {"k2 daemon": proc_rss_mib(k2.pid)}
        targets: dict[str, tuple[int | None, tuple[str, int]]] = {"direct": (None, sink)}
        targets["k2"] = (k2.pid, k2.proxy("sink", sink))
        for mode in ("copy", "splice"):
            proxy = CProxy(binary, mode, sink_port)
            proxies.append(proxy)
            targets[f"c {mode}"] = (proxy.pid, proxy.address)
        rss["c copy proxy"] = proc_rss_mib(targets["c copy"][0] or 0)
        rss["python, nothing imported"] = idle_rss_mib([sys.executable, "-c", WAITER])
        rss["python -S, nothing imported"] = idle_rss_mib([sys.executable, "-S", "-c", WAITER])
        rss["python -S, socket imported"] = idle_rss_mib([sys.executable, "-S", "-c", SOCKET_WAITER])
        if args.toxiproxy:
            toxiproxy = ApiProxy.toxiproxy(args.toxiproxy)
            rss["toxiproxy"] = proc_rss_mib(toxiproxy.pid)
            toxiproxy.close()

        total = args.bulk_mib << 20
        mbps: dict[str, list[float]] = {name: [] for name in targets}
        cpu: dict[str, list[float]] = {name: [] for name in targets if targets[name][0]}
        user: dict[str, list[float]] = {name: [] for name in cpu}  # of it, outside the kernel
        names = list(targets)
        for rep in range(args.reps):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                pid, address = targets[name]
                before = (proc_cpu_seconds(pid), user_cpu_seconds(pid)) if pid else (0.0, 0.0)
                mbps[name].append(load.bulk_mbps(address, total))
                if pid:
                    cpu[name].append((proc_cpu_seconds(pid) - before[0]) / (total / 1e9))
                    user[name].append((user_cpu_seconds(pid) - before[1]) / (total / 1e9))
            print(f"repetition {rep + 1}/{args.reps} done, load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        for proxy in proxies:
            proxy.close()
        if server.stdin:
            server.stdin.close()
        server.wait(10)
        shutil.rmtree(scratch, ignore_errors=True)

    bulk: dict[str, dict[str, Any]] = {}
    for name, values in mbps.items():
        bulk[name] = {"mb_s": spread(values, 0)}
        if name in cpu:
            ratios = [v / d for v, d in zip(values, mbps["direct"], strict=True)]
            bulk[name] |= {"ratio_to_direct": spread(ratios, 3), "proxy_cpu_s_per_gb": spread(cpu[name], 3)}
            bulk[name]["proxy_user_cpu_s_per_gb"] = spread(user[name], 3)
    versus_c = [k / c for k, c in zip(mbps["k2"], mbps["c copy"], strict=True)]
    k2_vs_c = {"ratio": spread(versus_c, 3), "k2_faster_in": sum(r > 1 for r in versus_c), "of": len(versus_c)}
    path = common.write(
        "proxy_floors",
        {
            "params": {"reps": args.reps, "bulk_mib": args.bulk_mib},
            "bulk_k2_vs_c_copy": k2_vs_c,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "bulk": bulk,
            "idle_rss_mib": {name: round(value, 1) for name, value in rss.items()},
        },
    )
    print(
        "| bulk 512 MiB | MB/s | ratio to direct | proxy CPU per GB (s) | of it in user space |\n|---|---|---|---|---|"
    )
    for name, row in bulk.items():
        cells = [_cell(row["mb_s"], "{:,.0f}")]
        if "ratio_to_direct" in row:
            cells += [_cell(row["ratio_to_direct"], "{:.2f}x"), _cell(row["proxy_cpu_s_per_gb"], "{:.2f}")]
            cells.append(_cell(row["proxy_user_cpu_s_per_gb"], "{:.2f}"))
        else:
            cells += ["-", "-", "-"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nK2 / C copy, repetition by repetition: {_cell(k2_vs_c['ratio'], '{:.2f}')}, "
          f"K2 faster in {k2_vs_c['k2_faster_in']} of {k2_vs_c['of']}")  # fmt: skip
    print("\nidle RSS (MiB): " + ", ".join(f"{name} {value:.1f}" for name, value in rss.items()))
    print(f"-> {path} ({time.strftime('%H:%M:%S')})")


def _at_least_one(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"takes a whole number from 1 up, got {text!r}")
    return int(text)


def _cell(figure: dict[str, Any], fmt: str) -> str:
    return f"{fmt.format(figure['median'])} ({fmt.format(figure['min'])}-{fmt.format(figure['max'])})"


if __name__ == "__main__":
    main()
