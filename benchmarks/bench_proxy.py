"""K2's fault proxy against direct loopback and, with `--toxiproxy PATH`, the real Toxiproxy, in one run.

Every target is its own process (the echo/sink service, K2's proxy daemon, Toxiproxy), configured through
the same HTTP API with the same JSON and driven by the same load tool (`proxy_load`). Repetitions are
interleaved (ABAB: the order of the targets flips every repetition), and within one the round trips
alternate between the targets in small blocks, so that noise from other work on the machine hits them
alike; each figure is the median over repetitions with its spread (min-max), and the machine's load
average is recorded before and after.

    .venv/bin/python -m benchmarks.bench_proxy [--toxiproxy PATH] [--reps 5] [--kafka]
    .venv/bin/python -m benchmarks.bench_proxy --readme    # README's table from the last results

Writes benchmarks/results/proxy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import proxy_load as load
from benchmarks.proxy_targets import ApiProxy, Direct, proc_cpu_seconds, proc_rss_mib

RESULTS = Path(__file__).resolve().parent / "results" / "proxy.json"
Address = tuple[str, int]
NOOP = [{"name": f"noop_{s}", "type": "noop", "stream": s, "attributes": {}} for s in ("upstream", "downstream")]
BANDWIDTH_KBPS = 1000
LATENCY_MS, JITTER_MS = 100, 50
RTT_BLOCK = 50  # 64 B round trips on one target before the next one's turn
CONCURRENT_RUNS = {200: 3, 1000: 3}  # many-connection runs per repetition, each in the other order (short runs)


def serve() -> None:
    """Child process: an echo and a counting sink server on their own event loop, until stdin closes."""
    from k2.chaos.proxy import EchoServer

    with EchoServer("echo") as echo, EchoServer("count") as sink:
        print(echo.address[1], sink.address[1], flush=True)
        sys.stdin.read()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spread(values: list[float], digits: int = 1) -> dict[str, Any]:
    """Median and min-max over repetitions, and every repetition's value."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "runs": [round(v, digits) for v in values],
    }


class Bench:
    def __init__(self, args: argparse.Namespace, echo: Address, sink: Address, server_pid: int) -> None:
        self.args = args
        self.server_pid = server_pid  # the echo/sink process
        self.echo, self.sink = echo, sink
        self.targets: list[Any] = [Direct(), ApiProxy.k2()]
        if args.toxiproxy:
            self.targets.append(ApiProxy.toxiproxy(args.toxiproxy))
        self.raw: dict[str, dict[str, list[Any]]] = {}
        self.addr: dict[tuple[str, str], Address] = {}
        for target in self.targets:
            rss_idle = proc_rss_mib(target.pid) if target.pid else None
            self._record("rss_idle_mib", target.name, rss_idle)
            for name, upstream, toxics in (
                ("echo", echo, None),
                ("sink", sink, None),
                ("sink_noop", sink, NOOP),
                ("echo_noop", echo, NOOP),
                (
                    "sink_bw",
                    sink,
                    [{"type": "bandwidth", "stream": "upstream", "attributes": {"rate": BANDWIDTH_KBPS}}],
                ),
                ("echo_lat", echo, [{"type": "latency", "attributes": {"latency": LATENCY_MS, "jitter": 0}}]),
                ("echo_jit", echo, [{"type": "latency", "attributes": {"latency": LATENCY_MS, "jitter": JITTER_MS}}]),
            ):
                if target.name == "direct" and toxics:
                    continue
                self.addr[(target.name, name)] = target.proxy(name, upstream, toxics)

    def close(self) -> None:
        for target in self.targets:
            target.close()

    def _record(self, phase: str, target: str, value: Any) -> None:
        if value is not None:
            self.raw.setdefault(phase, {}).setdefault(target, []).append(value)

    def each(self, rep: int, proxy: str, phase: str, run: Callable[[Address], Any], *, direct: bool = True) -> None:
        """Run `run` against every target, in the order of this repetition (ABAB)."""
        order = self.targets if rep % 2 == 0 else list(reversed(self.targets))
        for target in order:
            if target.name == "direct" and not direct:
                continue
            self._record(phase, target.name, run(self.addr[(target.name, proxy)]))

    def interleaved(self, rep: int, phases: dict[str, str], count: int, block: int, *, warmup: int) -> None:
        """Round trips through every target's proxies named in `phases` (proxy -> the phase its samples go
        to), all interleaved `block` by `block` (see `interleaved_rtts_us`), so that what is compared, and
        the direct round trip it is compared with, were measured under the same conditions."""
        order = self.targets if rep % 2 == 0 else list(reversed(self.targets))
        chosen = [(t.name, proxy) for t in order for proxy in phases if (t.name, proxy) in self.addr]
        addresses = [self.addr[key] for key in chosen]
        for (target, proxy), samples in zip(
            chosen, load.interleaved_rtts_us(addresses, count, block=block, warmup=warmup), strict=True
        ):
            self._record(phases[proxy], target, samples)

    def repetition(self, rep: int) -> None:
        a = self.args
        total = a.bulk_mib << 20
        order = self.targets if rep % 2 == 0 else list(reversed(self.targets))
        for target in order:  # bulk, with the CPU per GB moved of the proxy and of the whole pipeline
            cpu0 = proc_cpu_seconds(target.pid) if target.pid else 0.0
            ends0 = _own_cpu_seconds() + proc_cpu_seconds(self.server_pid)
            mbps = load.bulk_mbps(self.addr[(target.name, "sink")], total)
            self._record("bulk_mb_s", target.name, mbps)
            proxy_cpu = proc_cpu_seconds(target.pid) - cpu0 if target.pid else 0.0
            ends = _own_cpu_seconds() + proc_cpu_seconds(self.server_pid) - ends0
            self._record("pipeline_cpu_s_per_gb", target.name, (ends + proxy_cpu) / (total / 1e9))
            if target.pid:
                self._record("cpu_s_per_gb", target.name, proxy_cpu / (total / 1e9))
        self.each(rep, "sink_noop", "bulk_noop_mb_s", lambda ad: load.bulk_mbps(ad, total), direct=False)
        rtt_phases = {"echo": "rtt_64b_us", "echo_noop": "rtt_64b_noop_us"}
        self.interleaved(rep, rtt_phases, a.rtt_count, RTT_BLOCK, warmup=50)
        for n, runs in CONCURRENT_RUNS.items():
            for run in range(runs):
                self.each(rep + run, "echo", f"conc_{n}", lambda ad, n=n: load.concurrent_round_trips(ad, n, a.trips))
        self.each(rep, "echo", "accept_burst", lambda ad: load.accept_burst(ad, a.burst))
        if rep < a.slow_reps:
            self.each(
                rep, "sink_bw", "bandwidth_s", lambda ad: load.transfer_seconds(ad, a.bandwidth_bytes), direct=False
            )
            self.interleaved(rep, {"echo_lat": "latency_us"}, a.latency_count, 1, warmup=2)
            self.interleaved(rep, {"echo_jit": "jitter_us"}, a.jitter_count, 1, warmup=2)
            self._record("timer_overshoot_us", "host", load.timer_overshoot_us())
        for target in order:  # memory with many connections open
            if target.pid:
                with load.open_connections(self.addr[(target.name, "echo")], a.hold):
                    self._record("rss_held_mib", target.name, proc_rss_mib(target.pid))

    def summary(self) -> dict[str, Any]:
        r, a = self.raw, self.args
        out: dict[str, Any] = {}
        out["bulk_mb_s"] = {t: spread(v, 0) for t, v in r["bulk_mb_s"].items()}
        out["bulk_ratio_to_direct"] = {
            t: spread([x / d for x, d in zip(v, r["bulk_mb_s"]["direct"], strict=True)], 3)
            for t, v in r["bulk_mb_s"].items()
            if t != "direct"
        }
        out["bulk_noop_mb_s"] = {t: spread(v, 0) for t, v in r["bulk_noop_mb_s"].items()}
        out["cpu_s_per_gb"] = {t: spread(v, 2) for t, v in r["cpu_s_per_gb"].items()}
        out["pipeline_cpu_s_per_gb"] = {t: spread(v, 2) for t, v in r["pipeline_cpu_s_per_gb"].items()}
        for phase in ("rtt_64b_us", "rtt_64b_noop_us"):
            out[phase] = {}
            for t, runs in r[phase].items():
                base = r["rtt_64b_us"]["direct"]
                out[phase][t] = {
                    "p50": spread([percentile(x, 0.5) for x in runs]),
                    "p99": spread([percentile(x, 0.99) for x in runs]),
                    "added_p50": spread(
                        [percentile(x, 0.5) - percentile(d, 0.5) for x, d in zip(runs, base, strict=True)]
                    ),
                    "added_p99": spread(
                        [percentile(x, 0.99) - percentile(d, 0.99) for x, d in zip(runs, base, strict=True)]
                    ),
                }
        for n in (200, 1000):
            out[f"concurrent_{n}x{a.trips}"] = {
                t: {
                    "seconds": spread([x["seconds"] for x in runs], 3),
                    "p99_round_trip_ms": spread([percentile(x["latencies_us"], 0.99) / 1000 for x in runs], 2),
                }
                for t, runs in r[f"conc_{n}"].items()
            }
        out[f"accept_burst_{a.burst}"] = {
            t: {
                "seconds": spread([x["seconds"] for x in runs], 3),
                "listen_drops": spread([x["listen_drops"] for x in runs], 0),
                "listen_overflows": spread([x["listen_overflows"] for x in runs], 0),
            }
            for t, runs in r["accept_burst"].items()
        }
        expected = a.bandwidth_bytes / (BANDWIDTH_KBPS * 1000)
        out["bandwidth_error_pct"] = {
            t: spread([(expected / s - 1) * 100 for s in v], 2) for t, v in r["bandwidth_s"].items()
        }
        base_p50 = statistics.median(percentile(x, 0.5) for x in r["rtt_64b_us"]["direct"])
        out["latency_100ms"] = {
            t: {
                "p50_ms": spread([percentile(x, 0.5) / 1000 for x in runs], 2),
                "p99_ms": spread([percentile(x, 0.99) / 1000 for x in runs], 2),
                "excess_p50_us": spread([percentile(x, 0.5) - LATENCY_MS * 1000 - base_p50 for x in runs], 0),
            }
            for t, runs in r["latency_us"].items()
        }
        out["jitter_100ms_pm50"] = {
            t: {
                "mean_ms": spread([statistics.mean(x) / 1000 for x in runs], 2),
                "stdev_ms": spread([statistics.stdev(x) / 1000 for x in runs], 2),
                "min_ms": spread([min(x) / 1000 for x in runs], 2),
                "max_ms": spread([max(x) / 1000 for x in runs], 2),
                "expected": {"mean_ms": LATENCY_MS, "stdev_ms": round(JITTER_MS / 3**0.5, 2)},
            }
            for t, runs in r["jitter_us"].items()
        }
        overshoot = r["timer_overshoot_us"]["host"]
        out["host_timer_overshoot_us"] = {
            "p50": spread([percentile(x, 0.5) for x in overshoot]),
            "p99": spread([percentile(x, 0.99) for x in overshoot]),
        }
        out["rss_mib"] = {
            t: {
                "idle": round(r["rss_idle_mib"][t][0], 1),
                f"with_{a.hold}_connections": spread(r["rss_held_mib"][t]),
                "per_connection_kib": spread(
                    [(m - r["rss_idle_mib"][t][0]) * 1024 / a.hold for m in r["rss_held_mib"][t]]
                ),
            }
            for t in r["rss_held_mib"]
        }
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--toxiproxy", help="path of a toxiproxy-server binary to measure side by side")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions")
    parser.add_argument("--slow-reps", type=int, default=3, help="repetitions of the multi-second toxic phases")
    parser.add_argument("--bulk-mib", type=int, default=512, help="MiB per bulk transfer")
    parser.add_argument("--rtt-count", type=int, default=3000, help="64 B round trips per repetition")
    parser.add_argument("--trips", type=int, default=100, help="round trips per connection, many-connection phases")
    parser.add_argument("--burst", type=int, default=1000, help="connections opened at once")
    parser.add_argument("--hold", type=int, default=1000, help="connections held open for the memory figure")
    parser.add_argument("--bandwidth-bytes", type=int, default=5_000_000)
    parser.add_argument("--latency-count", type=int, default=100)
    parser.add_argument("--jitter-count", type=int, default=300)  # the stdev of 300 draws: ± 0.75 ms of 28.87
    parser.add_argument("--kafka", action="store_true", help="also the produce phases through a Kafka broker")
    parser.add_argument("--table", action="store_true", help="print README's table from the last results")
    parser.add_argument("--readme", action="store_true", help="rewrite README's table from the last results")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if args.table or args.readme:
        from benchmarks.proxy_table import render, update_readme

        doc = json.loads(RESULTS.read_text())
        if args.readme:
            update_readme(RESULTS.parents[2] / "README.md", doc)
        print(render(doc))
        return

    load_before = os.getloadavg()
    started = time.time()
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_proxy", "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    bench = None
    try:
        assert child.stdout is not None
        echo_port, sink_port = map(int, child.stdout.readline().split())
        bench = Bench(args, ("127.0.0.1", echo_port), ("127.0.0.1", sink_port), child.pid)
        for rep in range(args.reps):
            bench.repetition(rep)
            print(f"repetition {rep + 1}/{args.reps} done, load {os.getloadavg()[0]:.2f}", flush=True)
        result: dict[str, Any] = bench.summary()
        if args.kafka:
            from benchmarks.proxy_kafka import produce_phases

            result["kafka_produce"] = produce_phases(bench.targets, args.reps)
    finally:
        if bench is not None:
            bench.close()
        if child.stdin:
            child.stdin.close()
        child.wait(10)
    document = {
        "benchmark": "k2.chaos.proxy vs direct loopback" + (" vs Toxiproxy" if args.toxiproxy else ""),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "toxiproxy": _toxiproxy_version(args.toxiproxy),
        "params": {k: v for k, v in vars(args).items() if k not in ("serve", "table", "readme")}
        | {
            "rtt_block": RTT_BLOCK,
            "rtt_noop_with_plain": True,  # the noop round trips alternate with the plain and direct ones
            "concurrent_runs": {str(n): r for n, r in CONCURRENT_RUNS.items()},
        },
        **result,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    from benchmarks.proxy_table import render

    print(render(document))
    print(f"-> {RESULTS}")


def _own_cpu_seconds() -> float:
    """CPU time of this process: the load tool (the bulk client) runs in it."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _toxiproxy_version(binary: str | None) -> str | None:
    if not binary:
        return None
    done = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=10)
    return (done.stdout or done.stderr).strip()


if __name__ == "__main__":
    main()
