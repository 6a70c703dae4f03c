"""What the fault proxy costs with no toxic: bulk throughput and small-message RTT, direct vs proxied.

The service (an echo and a sink server) runs in a child process, as a real service would; the client and
the proxy share this process, as they do in a K2 test. Direct and proxied rounds alternate so that noise
from other work on the machine hits both alike; medians are reported. Also measured: the toxic path
(a `latency=0` toxic on both directions), to show what a toxic costs beyond its intended effect.

    .venv/bin/python benchmarks/bench_proxy.py [--bulk-mib 512] [--rounds 5] [--rtt-count 3000]

Writes benchmarks/results/proxy.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from k2.chaos.proxy import EchoServer, Proxy

RESULTS = Path(__file__).resolve().parent / "results" / "proxy.json"
Address = tuple[str, int]


def serve() -> None:
    """Child process: run an echo and a sink server until stdin closes."""
    with EchoServer("echo") as echo, EchoServer("sink") as sink:
        print(echo.address[1], sink.address[1], flush=True)
        sys.stdin.read()


def bulk_mbps(address: Address, total: int) -> float:
    """Send `total` bytes in 1 MiB writes; the sink answers with the count once it has them all."""
    block = memoryview(bytearray(1 << 20))
    with socket.create_connection(address, timeout=60) as sock:
        start = time.perf_counter()
        sent = 0
        while sent < total:
            sock.sendall(block)
            sent += len(block)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(64):
            reply += chunk
        elapsed = time.perf_counter() - start
    if int(reply) != sent:
        raise RuntimeError(f"sink got {reply!r} bytes, sent {sent}")
    return sent / elapsed / 1e6


def rtts_us(address: Address, count: int, size: int = 100) -> list[float]:
    """Round trips of a `size`-byte message through the echo server, in microseconds."""
    message = b"x" * size
    out = []
    with socket.create_connection(address, timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(50):  # warm up
            sock.sendall(message)
            _recv_exactly(sock, size)
        for _ in range(count):
            start = time.perf_counter()
            sock.sendall(message)
            _recv_exactly(sock, size)
            out.append((time.perf_counter() - start) * 1e6)
    return out


def _recv_exactly(sock: socket.socket, size: int) -> None:
    got = 0
    while got < size:
        chunk = sock.recv(size - got)
        if not chunk:
            raise ConnectionError("echo server closed the connection")
        got += len(chunk)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def alternate(rounds: int, runs: dict[str, Callable[[], Any]]) -> dict[str, list[Any]]:
    results: dict[str, list[Any]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            results[name].append(run())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bulk-mib", type=int, default=512, help="MiB per bulk transfer")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per measurement")
    parser.add_argument("--rtt-count", type=int, default=3000, help="round trips per RTT round")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return

    child = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        echo_port, sink_port = map(int, child.stdout.readline().split())
        echo, sink = ("127.0.0.1", echo_port), ("127.0.0.1", sink_port)
        total = args.bulk_mib << 20
        with (
            Proxy("bench-echo", upstream=echo, seed=1) as p_echo,
            Proxy("bench-sink", upstream=sink, seed=1) as p_sink,
            Proxy("bench-echo-toxic", upstream=echo, seed=1) as t_echo,
            Proxy("bench-sink-toxic", upstream=sink, seed=1) as t_sink,
        ):
            for toxic_proxy in (t_echo, t_sink):
                for stream in ("upstream", "downstream"):
                    toxic_proxy.add_toxic("latency", stream=stream, latency=0)
            bulk = alternate(
                args.rounds,
                {
                    "direct": lambda: bulk_mbps(sink, total),
                    "proxied": lambda: bulk_mbps(p_sink.listen_address, total),
                    "toxic_path": lambda: bulk_mbps(t_sink.listen_address, total),
                },
            )
            rtt = alternate(
                args.rounds,
                {
                    "direct": lambda: rtts_us(echo, args.rtt_count),
                    "proxied": lambda: rtts_us(p_echo.listen_address, args.rtt_count),
                    "toxic_path": lambda: rtts_us(t_echo.listen_address, args.rtt_count),
                },
            )
    finally:
        if child.stdin:
            child.stdin.close()
        child.wait(10)

    bulk_med = {k: statistics.median(v) for k, v in bulk.items()}
    rtt_all = {k: [x for run in v for x in run] for k, v in rtt.items()}
    rtt_stats = {k: {"p50": percentile(v, 0.50), "p99": percentile(v, 0.99)} for k, v in rtt_all.items()}
    result = {
        "benchmark": "k2.chaos.proxy, no toxic vs direct loopback",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "load_average_1m": os.getloadavg()[0],
        },
        "params": {"bulk_mib": args.bulk_mib, "rounds": args.rounds, "rtt_count": args.rtt_count},
        "bulk_mb_per_s": {
            "median": {k: round(v) for k, v in bulk_med.items()},
            "rounds": {k: [round(x) for x in v] for k, v in bulk.items()},
            "ratio_proxied_to_direct": round(bulk_med["proxied"] / bulk_med["direct"], 3),
            "ratio_toxic_path_to_direct": round(bulk_med["toxic_path"] / bulk_med["direct"], 3),
        },
        "rtt_us": {
            **{k: {q: round(x, 1) for q, x in v.items()} for k, v in rtt_stats.items()},
            "added_p50_proxied": round(rtt_stats["proxied"]["p50"] - rtt_stats["direct"]["p50"], 1),
            "added_p50_toxic_path": round(rtt_stats["toxic_path"]["p50"] - rtt_stats["direct"]["p50"], 1),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    b, r = result["bulk_mb_per_s"], result["rtt_us"]
    print(
        f"bulk MB/s   direct {b['median']['direct']}, proxied {b['median']['proxied']} "
        f"(ratio {b['ratio_proxied_to_direct']}), toxic path {b['median']['toxic_path']} "
        f"(ratio {b['ratio_toxic_path_to_direct']})"
    )
    for name in ("direct", "proxied", "toxic_path"):
        print(f"rtt µs      {name:<10} p50 {r[name]['p50']:>7}  p99 {r[name]['p99']:>7}")
    print(f"added p50   proxied {r['added_p50_proxied']} µs, toxic path {r['added_p50_toxic_path']} µs")
    print(f"load avg    {result['machine']['load_average_1m']:.2f} on {os.cpu_count()} cpus -> {RESULTS}")


if __name__ == "__main__":
    main()
