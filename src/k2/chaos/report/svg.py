"""Inline SVG charts for the HTML report, drawn in Python so the page needs no script, font or network.

One timeline per scenario: fault windows shaded behind produce/ack throughput per second, and ack latency
below on the same time axis, with each restore and the recovery after it marked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

__all__ = ["Frame", "Line", "nice_ticks", "panel", "timeline_svg", "x_axis"]

FAULT_FILL = "#f59e0b"
WIDTH, LEFT, RIGHT, TOP = 960, 64, 20, 26
PANEL_H, GAP, AXIS_H = 150, 46, 28


@dataclass(frozen=True)
class Line:
    label: str
    colour: str
    points: list[tuple[float, float | None]]  # (x seconds from origin, y or None for a gap)
    dashed: bool = False


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `high` (1, 2, 2.5, 5 x 10^n steps)."""
    if high <= 0 or not math.isfinite(high):
        return [0.0, 1.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    n = math.ceil(high / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


class Frame:
    """Maps data to pixels for one panel."""

    def __init__(self, x_max: float, y_max: float, top: float, height: float) -> None:
        self.x_max, self.y_max, self.top, self.height = max(x_max, 1e-9), max(y_max, 1e-9), top, height
        self.plot_w = WIDTH - LEFT - RIGHT

    def x(self, seconds: float) -> float:
        return LEFT + min(max(seconds, 0.0), self.x_max) / self.x_max * self.plot_w

    def y(self, value: float) -> float:
        return self.top + self.height - min(max(value, 0.0), self.y_max) / self.y_max * self.height


def panel(out: list[str], frame: Frame, lines: Sequence[Line], y_ticks: list[float], title: str, unit: str) -> None:
    bottom = frame.top + frame.height
    out.append(f'<text class="ptitle" x="{LEFT}" y="{frame.top - 8:.1f}">{escape(title)}</text>')
    for tick in y_ticks:
        y = frame.y(tick)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(tick)}{unit}</text>')
    out.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom:.1f}" y2="{bottom:.1f}"/>')
    for line in lines:
        dash = ' stroke-dasharray="5 3"' if line.dashed else ""
        for segment in _segments(line.points):
            pts = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in segment)
            if len(segment) == 1:
                x, y = segment[0]
                out.append(f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="2.5" fill="{line.colour}"/>')
            else:
                out.append(
                    f'<polyline points="{pts}" fill="none" stroke="{line.colour}" stroke-width="2" '
                    f'stroke-linejoin="round"{dash}/>'
                )
    legend_x = WIDTH - RIGHT
    for line in reversed(lines):
        label = escape(line.label)
        width = 14 + 7 * len(line.label)
        legend_x -= width + 14
        out.append(
            f'<rect x="{legend_x}" y="{frame.top - 17:.1f}" width="10" height="10" rx="2" fill="{line.colour}"/>'
        )
        out.append(f'<text class="legend" x="{legend_x + 14}" y="{frame.top - 8:.1f}">{label}</text>')


def _segments(points: list[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    segments: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is None:
            if segments[-1]:
                segments.append([])
        else:
            segments[-1].append((x, y))
    return [s for s in segments if s]


def timeline_svg(
    series: Sequence[dict[str, Any]],
    faults: Sequence[dict[str, Any]],
    *,
    origin: float,
    end: float,
    chart_id: str = "t",
) -> str:
    """The scenario's timeline: throughput and latency panels over shaded fault windows, recovery marked."""
    x_max = max(end - origin, 1.0)
    centre = [(row["t"] + 0.5 - origin, row) for row in series]
    throughput = [
        Line("invoked/s", "#2563eb", [(x, row["invoked"]) for x, row in centre]),
        Line("acked/s", "#16a34a", [(x, row["acked"]) for x, row in centre]),
        Line("failed+unknown/s", "#dc2626", [(x, row["failed"] + row["unknown"]) for x, row in centre], dashed=True),
    ]
    slowest = max((row.get("ack_p99_s") or 0.0 for row in series), default=0.0)
    scale, unit = (1.0, " s") if slowest >= 1.0 else (1000.0, " ms")  # seconds once latency passes one second
    latency = [
        Line("p50", "#7c3aed", [(x, _scaled(row.get("ack_p50_s"), scale)) for x, row in centre]),
        Line("p99", "#db2777", [(x, _scaled(row.get("ack_p99_s"), scale)) for x, row in centre], dashed=True),
    ]
    t_high = max((y for line in throughput for _, y in line.points if y is not None), default=0.0)
    l_high = max((y for line in latency for _, y in line.points if y is not None), default=0.0)
    t_ticks, l_ticks = nice_ticks(t_high or 1.0, 4), nice_ticks(l_high or 1.0, 4)
    top1 = TOP
    top2 = top1 + PANEL_H + GAP
    height = top2 + PANEL_H + AXIS_H
    f1 = Frame(x_max, t_ticks[-1], top1, PANEL_H)
    f2 = Frame(x_max, l_ticks[-1], top2, PANEL_H)
    out = [
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{chart_id}-title" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{chart_id}-title">Throughput and ack latency per second with fault windows</title>',
    ]
    _fault_layer(out, faults, origin, f1, top1, top2 + PANEL_H)
    panel(out, f1, throughput, t_ticks, "Throughput (records per second)", "")
    panel(out, f2, latency, l_ticks, "Ack latency (invoke to ack)", unit)
    x_axis(out, f1, x_max, top2 + PANEL_H)
    _hover(out, centre, f1, top1, top2 + PANEL_H)
    out.append("</svg>")
    return "\n".join(out)


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else value * scale


def _ms(value: float | None) -> float | None:
    return _scaled(value, 1000.0)


def _fault_layer(
    out: list[str], faults: Sequence[dict[str, Any]], origin: float, frame: Frame, top: float, bottom: float
) -> None:
    """Shade each fault window, label it, and mark restore -> first ack (recovery)."""
    for i, fault in enumerate(faults):
        start = fault.get("injected_at")
        if start is None:
            continue
        restored = fault.get("restored_at")
        x1 = frame.x(start - origin)
        x2 = frame.x((restored if restored is not None else origin + frame.x_max) - origin)
        label = escape(f"{fault.get('kind')} {fault.get('target')}")
        out.append(
            f'<rect class="fault" x="{x1:.1f}" y="{top - 4:.1f}" width="{max(x2 - x1, 1.5):.1f}" '
            f'height="{bottom - top + 4:.1f}" fill="{FAULT_FILL}"><title>{label}</title></rect>'
        )
        out.append(f'<text class="flabel" x="{x1 + 4:.1f}" y="{bottom - 6 - 12 * i:.1f}">{label}</text>')
        rec = fault.get("recovery_s")
        if restored is not None and rec is not None:
            xr = frame.x(restored + rec - origin)
            out.append(f'<line class="recovery" x1="{xr:.1f}" x2="{xr:.1f}" y1="{top - 4:.1f}" y2="{bottom:.1f}"/>')
            out.append(
                f'<text class="rlabel" x="{xr + 4:.1f}" y="{top + 12 + 12 * i:.1f}">recovered +{rec:.2f}s</text>'
            )
        elif restored is not None and fault.get("traffic_after_restore", True):
            out.append(f'<text class="rlabel bad" x="{x2 + 4:.1f}" y="{top + 12:.1f}">no ack after restore</text>')


def x_axis(out: list[str], frame: Frame, x_max: float, bottom: float) -> None:
    for tick in nice_ticks(x_max, 10):
        if tick > x_max + 1e-9:
            break
        x = frame.x(tick)
        out.append(f'<line class="xtick" x1="{x:.1f}" x2="{x:.1f}" y1="{bottom:.1f}" y2="{bottom + 4:.1f}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{bottom + 17:.1f}" text-anchor="middle">{_fmt(tick)}s</text>')


def _hover(out: list[str], centre: list[tuple[float, dict[str, Any]]], frame: Frame, top: float, bottom: float) -> None:
    """Invisible per-second columns whose tooltip lists that second's numbers (no script needed)."""
    if len(centre) > 1200:  # keep the page light on very long runs
        return
    col = frame.plot_w / frame.x_max
    for x, row in centre:
        p50, p99 = _ms(row.get("ack_p50_s")), _ms(row.get("ack_p99_s"))
        lat = f", ack p50 {p50:.1f} ms, p99 {p99:.1f} ms" if p50 is not None and p99 is not None else ""
        tip = (
            f"+{x - 0.5:.0f}s: invoked {row['invoked']}, acked {row['acked']}, failed {row['failed']}, "
            f"unknown {row['unknown']}{lat}"
        )
        out.append(
            f'<rect class="hover" x="{frame.x(x) - col / 2:.1f}" y="{top:.1f}" width="{col:.1f}" '
            f'height="{bottom - top:.1f}"><title>{escape(tip)}</title></rect>'
        )
