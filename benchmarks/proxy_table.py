"""README's fault-proxy table, rendered from benchmarks/results/proxy.json (`bench_proxy --table`)."""

from __future__ import annotations

from typing import Any


def _fig(s: dict[str, Any] | None, unit: str = "", digits: int = 0) -> str:
    """`median (min-max)` of a spread."""
    if not s:
        return "-"

    def f(x: float) -> str:
        return f"{x:,.{digits}f}"

    if s["min"] == s["max"]:
        return f"{f(s['median'])}{unit}"
    return f"{f(s['median'])}{unit} ({f(s['min'])}-{f(s['max'])})"


def render(doc: dict[str, Any]) -> str:
    cols = ["direct", "toxiproxy", "k2"] if doc.get("toxiproxy") else ["direct", "k2"]
    head = {"direct": "direct", "toxiproxy": "Toxiproxy 2.12.0", "k2": "K2"}
    rows: list[tuple[str, dict[str, str]]] = []

    def row(what: str, cells: dict[str, str]) -> None:
        rows.append((what, cells))

    p = doc["params"]
    row(f"bulk {p['bulk_mib']} MiB, no toxic (MB/s)", {t: _fig(doc["bulk_mb_s"].get(t)) for t in cols})
    row("bulk, ratio to direct", {t: _fig(doc["bulk_ratio_to_direct"].get(t), "x", 2) for t in cols})
    row("bulk with a noop toxic each way (MB/s)", {t: _fig(doc["bulk_noop_mb_s"].get(t)) for t in cols})
    row("proxy CPU per GB moved (s)", {t: _fig(doc["cpu_s_per_gb"].get(t), "", 2) for t in cols})
    rtt = doc["rtt_64b_us"]
    row(
        "64 B round trip p50 / p99 (µs)",
        {t: f"{_fig(rtt[t]['p50'])} / {_fig(rtt[t]['p99'])}" for t in cols if t in rtt},
    )
    row(
        "64 B round trip, added p50 / p99 (µs)",
        {
            t: f"+{_fig(rtt[t]['added_p50'], '', 1)} / +{_fig(rtt[t]['added_p99'], '', 1)}"
            for t in cols
            if t != "direct"
        },
    )
    noop = doc["rtt_64b_noop_us"]
    row("64 B round trip with noop toxics, added p50 (µs)", {t: f"+{_fig(noop[t]['added_p50'], '', 1)}" for t in noop})
    for n in (200, 1000):
        c = doc[f"concurrent_{n}x{p['trips']}"]
        row(
            f"{n} connections x {p['trips']} round trips: time (s) / p99 per round trip (ms)",
            {t: f"{_fig(c[t]['seconds'], '', 3)} / {_fig(c[t]['p99_round_trip_ms'], '', 2)}" for t in cols},
        )
    b = doc[f"accept_burst_{p['burst']}"]
    row(
        f"{p['burst']} connects at once: time to all answered (s) / SYNs dropped",
        {t: f"{_fig(b[t]['seconds'], '', 3)} / {_fig(b[t]['listen_drops'])}" for t in cols},
    )
    bw = doc["bandwidth_error_pct"]
    row(
        f"bandwidth toxic 1000 KB/s over {p['bandwidth_bytes'] / 1e6:g} MB, error", {t: _fig(bw[t], "%", 2) for t in bw}
    )
    lat = doc["latency_100ms"]
    row(
        "latency toxic 100 ms: round trip p50 / p99 (ms)",
        {t: f"{_fig(lat[t]['p50_ms'], '', 2)} / {_fig(lat[t]['p99_ms'], '', 2)}" for t in lat},
    )
    jit = doc["jitter_100ms_pm50"]
    row(
        "latency 100 ± 50 ms: mean / stdev (ms; uniform: 100 / 28.87)",
        {t: f"{_fig(jit[t]['mean_ms'], '', 1)} / {_fig(jit[t]['stdev_ms'], '', 1)}" for t in jit},
    )
    o = doc["host_timer_overshoot_us"]
    row("host timer overshoot p50 / p99 (µs), for scale", {"direct": f"{_fig(o['p50'])} / {_fig(o['p99'])}"})
    rss = doc["rss_mib"]
    hold = p["hold"]
    row(
        f"RSS idle / with {hold} connections (MiB)",
        {t: f"{rss[t]['idle']} / {_fig(rss[t][f'with_{hold}_connections'], '', 1)}" for t in rss},
    )
    kafka = doc.get("kafka_produce")
    if kafka:
        for n, by_target in kafka.items():
            row(
                f"Kafka produce, {n} producer(s): msg/s / p99 ack (ms)",
                {t: f"{_fig(v['msgs_per_s'])} / {_fig(v['p99_ack_ms'], '', 1)}" for t, v in by_target.items()},
            )
    lines = ["| measure | " + " | ".join(head[c] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for what, cells in rows:
        lines.append(f"| {what} | " + " | ".join(cells.get(c, "-") for c in cols) + " |")
    m = doc["machine"]
    lines.append("")
    lines.append(
        f"{doc['when']}, {m['cpus']} cores, load average before {m['load_average_before'][0]} / after "
        f"{m['load_average_after'][0]}; median of {p['reps']} interleaved repetitions ({p['slow_reps']} for the "
        "toxic timing rows), (min-max) over them."
    )
    return "\n".join(lines)
