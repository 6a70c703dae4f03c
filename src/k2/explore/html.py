"""report.html for an exploration: one self-contained page (the chaos report's stylesheet, inline SVG, no
script, font or network). Top: the outcome, why, the anomalies beside it, and the command that replays the
run. Then the timeline, the faults as planned and as injected, the violations, the events and the check.
"""

from __future__ import annotations

import time
from importlib import resources
from string import Template
from typing import Any

from k2.chaos.outcome import Outcome
from k2.chaos.report.html import _e
from k2.chaos.report.model import iso
from k2.explore.timeline import explore_timeline_svg

__all__ = ["render_html"]

MAX_ROWS = 200


def _badge(outcome: Outcome | None) -> str:
    if outcome is None:
        return '<span class="badge o-crash big">NO VERDICT</span>'
    return f'<span class="badge o-{outcome.value} big">{_e(outcome.label)}</span>'


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return '<p class="small">none</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows[:MAX_ROWS])
    more = f'<p class="small">{len(rows) - MAX_ROWS} more in report.json</p>' if len(rows) > MAX_ROWS else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def _header(doc: dict[str, Any], outcome: Outcome | None) -> str:
    schedule, verdict = doc["schedule"], doc.get("verdict") or {}
    reason = verdict.get("reason") or {
        "scheduled": "the run has not finished (or its runner was killed)",
        "interrupted": "the run was interrupted",
    }.get(doc.get("status", ""), "")
    anomalies = verdict.get("anomalies") or []
    anomaly_html = ""
    if anomalies:
        items = "".join(
            f"<li>{_e(a.get('title') or a.get('kind'))}: <span class='mono'>{_e(a)}</span></li>"
            for a in anomalies[:MAX_ROWS]
        )
        anomaly_html = (
            f'<div class="reason"><b>Third-party anomalies beside the outcome</b> (not blamed on the '
            f"platform):<ul>{items}</ul></div>"
        )
    chips = [
        f"seed {schedule['seed']}",
        f"{schedule['duration_s']:g} s",
        f"{len(schedule['faults'])} faults",
        f"rate {schedule['workload']['rate']}/s",
        f"{schedule['workload']['writers']} writers",
        f"backend {doc.get('backend', '?')}",
        f"status {doc.get('status')}",
    ]
    if schedule["workload"].get("planted"):
        chips.append("PLANTED BUG " + ", ".join(schedule["workload"]["planted"]))
    replay = doc.get("replay") or ""
    return f"""<section class="card"><div class="head"><div><h1>K2 explore</h1>
<p class="meta">{_e(schedule.get("origin", ""))}</p></div><div>{_badge(outcome)}</div></div>
<div class="reason{" r-" + outcome.value if outcome else ""}"><div>{_e(reason)}</div>
{f'<div class="action">Action: {_e(outcome.action)}</div>' if outcome else ""}</div>
{anomaly_html}
<div class="chips">{"".join(f'<span class="chip">{_e(c)}</span>' for c in chips)}</div>
{f'<p class="small">Replay: <code>{_e(replay)}</code></p>' if replay else ""}</section>"""


def _faults(run: dict[str, Any]) -> str:
    rows = [
        [
            f"#{f['index']}",
            f["kind"],
            f["target"],
            ", ".join(f"{k}={v}" for k, v in f["params"].items()),
            f"+{f['at_s']:g}s for {f['duration_s']:g}s",
            "-"
            if f.get("injected_s") is None
            else f"+{f['injected_s']:g}s .. " + ("?" if f.get("restored_s") is None else f"+{f['restored_s']:g}s"),
            f.get("status", ""),
            _effect(f.get("effect")),
        ]
        for f in run["faults"]
    ]
    return _table(["#", "kind", "service", "parameters", "planned", "injected .. restored", "status", "effect"], rows)


def _effect(effect: Any) -> str:
    """A typed effect as its one-line summary (report.json keeps it whole)."""
    if isinstance(effect, dict):
        return str(effect.get("summary") or effect)
    return "" if effect is None else str(effect)


def _check(verdict: dict[str, Any]) -> str:
    check = verdict.get("check")
    if not check:
        return '<p class="small">no check (the run did not finish)</p>'
    parts = [f"<p class='mono'>{_e(check.get('summary'))}</p>"]
    for label in ("lost", "duplicated"):
        items = check.get(label) or []
        if items:
            keys = "".join(f"<code>{_e(x.get('key'))}@{_e(x.get('source'))}</code>" for x in items[:40])
            parts.append(f"<h3>{label} ({len(items)})</h3><div class='keys'>{keys}</div>")
    return "".join(parts)


def render_html(doc: dict[str, Any]) -> str:
    verdict = doc.get("verdict") or {}
    outcome = Outcome(verdict["outcome"]) if verdict.get("outcome") else None
    run = doc.get("run") or {"faults": [], "series": [], "samples": [], "violations": [], "events": []}
    schedule = doc["schedule"]
    faults = run["faults"] or [{**f, "status": "planned"} for f in schedule["faults"]]
    chart = explore_timeline_svg(
        faults, run.get("series", []), run["samples"], run["violations"], schedule["duration_s"]
    )
    hangs = "".join(
        f"<details><summary>{_e(h['detail'])}</summary><pre>{_e(h.get('stacks'))}</pre></details>"
        for h in verdict.get("hangs") or []
    )
    crashes = "".join(
        f"<details><summary>{_e(c.splitlines()[0])}</summary><pre>{_e(c)}</pre></details>"
        for c in verdict.get("crashes") or []
    )
    body = "\n".join(
        [
            _header(doc, outcome),
            f'<section class="card"><h3>Timeline</h3>{chart}</section>',
            f'<section class="card"><h3>Faults</h3>{_faults({"faults": faults})}</section>',
            '<section class="card"><h3>Steady-state violations</h3>'
            + _table(
                ["rule", "from", "to", "worst"],
                [
                    [v["rule"], f"+{v['start_s']:g}s", "end" if v["end_s"] is None else f"+{v['end_s']:g}s", v["worst"]]
                    for v in run["violations"]
                ],
            )
            + "<h3>Events</h3>"
            + _table(["t", "what"], [[f"+{e['t']:g}s", e["text"]] for e in run["events"]])
            + "</section>",
            f'<section class="card"><h3>Check</h3>{_check(verdict)}{hangs}{crashes}</section>',
        ]
    )
    template = Template(resources.files("k2.chaos.report").joinpath("template.html").read_text(encoding="utf-8"))
    title = f"K2 explore seed {schedule['seed']}: {outcome.label if outcome else doc.get('status')}"
    return template.substitute(title=_e(title), body=body, generated=_e(iso(time.time())))
