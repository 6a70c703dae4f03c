"""The explore timeline as inline SVG: the schedule as lanes (one per service; each fault as planned, and as
it was really injected and restored) over four panels on one time axis — throughput, ack latency p99, the
writers' lag and query success — with every violation of the steady state shaded on its panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from k2.chaos.report.svg import LEFT, RIGHT, TOP, WIDTH, Frame, Line, nice_ticks, panel, x_axis

__all__ = ["explore_timeline_svg"]

LANE_H, PANEL_H, GAP, AXIS_H = 20, 110, 40, 28
VIOLATION_FILL = "#dc2626"
_PANELS = (  # (title, unit, probes shaded here)
    ("Throughput (records per second)", "", ("throughput",)),
    ("Ack latency p99", " s", ("p99",)),
    ("Writers' lag (oldest acknowledged record not yet committed)", " s", ("lag",)),
    ("Query success (last 10 s)", "%", ("query_success", "query_p99")),
)


def _lines(series: Sequence[dict[str, Any]], samples: Sequence[dict[str, Any]]) -> list[list[Line]]:
    per_second = [(row["second"] + 0.5, row) for row in series]
    return [
        [
            Line("invoked/s", "#2563eb", [(x, row["invoked"]) for x, row in per_second]),
            Line("acked/s", "#16a34a", [(x, row["acked"]) for x, row in per_second]),
            Line(
                "failed+unknown/s",
                "#dc2626",
                [(x, row["failed"] + row["unknown"]) for x, row in per_second],
                dashed=True,
            ),
        ],
        [Line("p99", "#db2777", [(x, row.get("ack_p99_s")) for x, row in per_second])],
        [Line("lag", "#7c3aed", [(s["t"], s.get("lag")) for s in samples])],
        [Line("query success", "#0e7490", [(s["t"], s.get("query_success")) for s in samples])],
    ]


def explore_timeline_svg(
    faults: Sequence[dict[str, Any]],
    series: Sequence[dict[str, Any]],
    samples: Sequence[dict[str, Any]],
    violations: Sequence[dict[str, Any]],
    duration_s: float,
) -> str:
    """`faults`: the report's fault rows (planned `at_s`/`duration_s`, actual `injected_s`/`restored_s`)."""
    x_max = max(duration_s, max((r["second"] + 1 for r in series), default=0), 1.0)
    lanes = list(dict.fromkeys(f["target"] for f in faults))
    lanes_top = TOP + 14
    top = lanes_top + LANE_H * max(1, len(lanes)) + GAP
    height = top + len(_PANELS) * (PANEL_H + GAP) - GAP + AXIS_H
    out = [
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="explore timeline" '
        'preserveAspectRatio="xMidYMid meet">'
    ]
    lane_frame = Frame(x_max, 1.0, lanes_top, LANE_H)
    out.append(f'<text class="ptitle" x="{LEFT}" y="{lanes_top - 6}">Faults (planned outline, injected solid)</text>')
    for i, target in enumerate(lanes):
        y = lanes_top + i * LANE_H
        out.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 14}" text-anchor="end">{escape(target)}</text>')
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y + LANE_H}" y2="{y + LANE_H}"/>')
    for fault in faults:
        y = lanes_top + lanes.index(fault["target"]) * LANE_H + 3
        x1, x2 = lane_frame.x(fault["at_s"]), lane_frame.x(fault["at_s"] + fault["duration_s"])
        tip = escape(
            f"#{fault['index']} {fault['kind']} {fault['target']} {fault.get('params', {})} ({fault.get('status', '')})"
        )
        out.append(
            f'<rect x="{x1:.1f}" y="{y}" width="{max(x2 - x1, 1.5):.1f}" height="{LANE_H - 6}" fill="none" '
            f'stroke="#b45309" stroke-dasharray="3 2"><title>{tip}</title></rect>'
        )
        if fault.get("injected_s") is not None:
            end = fault.get("restored_s")
            a = lane_frame.x(fault["injected_s"])
            b = lane_frame.x(end if end is not None else x_max)
            out.append(
                f'<rect class="fault" style="fill-opacity:.55" x="{a:.1f}" y="{y}" width="{max(b - a, 1.5):.1f}" '
                f'height="{LANE_H - 6}" fill="#f59e0b"><title>{tip}</title></rect>'
            )
        out.append(
            f'<text class="flabel" x="{x1 + 3:.1f}" y="{y + 11}">#{fault["index"]} {escape(fault["kind"])}</text>'
        )
    for (title, unit, probes), lines in zip(_PANELS, _lines(series, samples), strict=True):
        high = max((y for line in lines for _, y in line.points if y is not None), default=0.0)
        ticks = nice_ticks(100.0 if unit == "%" else (high or 1.0), 4)
        frame = Frame(x_max, ticks[-1], top, PANEL_H)
        for v in violations:
            if v["probe"] in probes:
                a, b = frame.x(v["start_s"]), frame.x(v["end_s"] if v["end_s"] is not None else x_max)
                out.append(
                    f'<rect x="{a:.1f}" y="{top:.1f}" width="{max(b - a, 1.5):.1f}" height="{PANEL_H}" '
                    f'fill="{VIOLATION_FILL}" fill-opacity=".08"><title>{escape(v["rule"])}</title></rect>'
                )
        panel(out, frame, lines, ticks, title, unit)
        top += PANEL_H + GAP
    x_axis(out, Frame(x_max, 1.0, 0, 0), x_max, top - GAP)
    out.append("</svg>")
    return "\n".join(out)
