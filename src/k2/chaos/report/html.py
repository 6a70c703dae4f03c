"""report.html: one self-contained page (inline CSS and SVG; no script, font or network) to read a run offline.

Top: the verdict, seed and stack versions (what is needed to replay it). Then one card per scenario: why it
got its outcome and what to do, a timeline of fault windows over throughput and latency with recovery
marked, the faults with the effect actually measured, and what the checker found.
"""

from __future__ import annotations

import re
import time
from html import escape
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from k2.chaos.outcome import Outcome
from k2.chaos.report.model import RunReport, ScenarioResult, iso
from k2.chaos.report.svg import timeline_svg
from k2.chaos.report.terminal import format_recovery

__all__ = ["render_html", "write_html"]

MAX_KEYS = 20  # examples per list on the page; report.json has them all


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _e(value: object) -> str:
    """Escaped text; terminal colour codes and control bytes (stack dumps, error output) removed."""
    text = "" if value is None else str(value)
    return escape(_CONTROL.sub("", _ANSI.sub("", text)))


def _badge(outcome: Outcome, big: bool = False) -> str:
    return f'<span class="badge o-{outcome.value}{" big" if big else ""}">{_e(outcome.label)}</span>'


def _kv(data: dict[str, Any] | None) -> str:
    if not data:
        return '<span class="small">-</span>'
    items = "".join(
        f'<li><span class="k">{_e(k)}:</span> <span class="mono">{_e(_short(v))}</span></li>' for k, v in data.items()
    )
    return f'<ul class="kv">{items}</ul>'


# Fields every effect has, shown elsewhere in the row (or, for `detail`, kept for report.json).
_EFFECT_COMMON = {"type", "summary", "primitive", "target", "started_at", "detail"}


def _effect(data: dict[str, Any] | None) -> str:
    """A typed effect: its summary, then its measured fields (backend evidence stays in report.json)."""
    if not data or "summary" not in data:
        return _kv(data)
    fields = {k: v for k, v in data.items() if k not in _EFFECT_COMMON and v not in (None, {}, [])}
    return f"<div><b>{_e(data['summary'])}</b></div>{_kv(fields)}"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 160 else text[:157] + "..."


def _header(run: RunReport) -> str:
    outcome = run.outcome
    verdict = "FAILED" if run.failed else "OK"
    versions = "".join(f'<span class="chip">{_e(k)} <b>{_e(v)}</b></span>' for k, v in sorted(run.versions.items()))
    counts = run.counts()
    tiles = "".join(
        f'<div class="tile t-{o.value}{" zero" if not counts[o.value] else ""}"><div class="n">{counts[o.value]}</div>'
        f'<div class="l">{_e(o.label)}</div></div>'
        for o in Outcome
    )
    return f"""<section class="card">
<div class="head"><div><h1>{_e(run.title)}</h1>
<p class="meta">Seed <b class="mono">{_e(run.seed)}</b> &middot; backend <b>{_e(run.backend or "-")}</b> &middot;
started <b>{_e(iso(run.started_at))}</b> &middot; finished <b>{_e(iso(run.finished_at) or "-")}</b> &middot;
{run.duration_s:.1f}s &middot; {len(run.scenarios)} scenarios</p></div>
<div>{_badge(outcome, big=True)} <span class="badge big {"o-crash" if run.failed else "o-pass"}">{verdict}</span></div>
</div>
<div class="chips">{versions or '<span class="small">no stack versions recorded</span>'}</div>
<div class="tiles">{tiles}</div>
<p class="small">The same seed replays the same fault schedule (report.json: <code>fault_schedule</code>):
<code>k2 chaos run --seed {_e(run.seed)}</code>, or <code>pytest --chaos-seed {_e(run.seed)}</code>.</p>
</section>"""


def _expectation(s: ScenarioResult) -> str:
    """What the scenario expected and whether it held; nothing when it expected PASS and either passed or
    ended in a class that is always a failure (the badge says it all)."""
    if s.expected == [Outcome.PASS.value] and (s.as_expected or s.outcome.info.failure):
        return ""
    wanted = " or ".join(Outcome(o).label for o in s.expected)
    if s.as_expected:
        return ' <span class="small">as expected</span>'
    return f' <span class="bad">expected {_e(wanted)}</span>'


def _overview(run: RunReport) -> str:
    rows = []
    for i, s in enumerate(run.scenarios):
        lost = f'<span class="bad">{s.lost}</span>' if s.lost else "0"
        dup = f'<span class="bad">{s.duplicated}</span>' if s.duplicated else "0"
        rows.append(
            f'<tr><td><a href="#s{i}">{_e(s.name)}</a></td><td>{_badge(s.outcome)}{_expectation(s)}</td>'
            f'<td class="num">{_e(format_recovery(s))}</td><td class="num">{s.acked}</td><td class="num">{lost}</td>'
            f'<td class="num">{dup}</td><td class="num">{s.duration_s:.1f}s</td></tr>'
        )
    return f"""<section class="card"><h3 style="margin-top:0">Scenarios</h3>
<table><thead><tr><th>Scenario</th><th>Outcome</th><th class="num">Recovery</th><th class="num">Acked</th>
<th class="num">Lost</th><th class="num">Dup</th><th class="num">Time</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table></section>"""


def _metrics(s: ScenarioResult) -> str:
    c = s.counts
    items = [
        ("duration", f"{s.duration_s:.1f}s", False),
        ("recovery", format_recovery(s), s.recovered is False),
        ("invoked", c.get("invoked", 0), False),
        ("acked", c.get("acknowledged", 0), False),
        ("failed", c.get("failed", 0), False),
        ("unknown", c.get("unknown", 0) + c.get("pending", 0), False),
        ("lost", s.lost, bool(s.lost)),
        ("duplicated", s.duplicated, bool(s.duplicated)),
    ]
    return (
        '<div class="metrics">'
        + "".join(
            f'<div class="metric{" alert" if alert else ""}"><div class="v">{_e(v)}</div><div class="k">{k}</div></div>'
            for k, v, alert in items
        )
        + "</div>"
    )


def _faults(s: ScenarioResult) -> str:
    if not s.faults:
        return '<h3>Faults</h3><p class="small">No fault was injected in this scenario.</p>'
    origin = s.started_at
    rows = []
    for f in s.faults:
        start, end = f.get("injected_at"), f.get("restored_at")
        if start is None:
            window = "not injected"
        else:
            base = origin if origin is not None else start
            window = f"+{start - base:.2f}s &rarr; " + (
                f"+{end - base:.2f}s ({end - start:.2f}s)" if end else "not restored"
            )
        if f.get("after_invoked") is not None:
            window += f"<div class='small'>after {f['after_invoked']} operations</div>"
        rec = f.get("recovery_s")
        rec_text = f"{rec:.2f}s" if rec is not None else ("never" if f.get("traffic_after_restore") else "-")
        error = f'<div class="bad">{_e(f["error"])}</div>' if f.get("error") else ""
        notes = _kv(f["notes"]) if f.get("notes") else ""
        rows.append(
            f"<tr><td><b>{_e(f.get('kind'))}</b><div class='small'>{_e(f.get('target'))}</div>{error}</td>"
            f"<td>{_kv(f.get('params'))}</td><td class='mono'>{window}</td><td>{_effect(f.get('effect'))}"
            f"{notes}</td><td>{_effect(f.get('restore_effect'))}</td><td class='num'>{rec_text}</td></tr>"
        )
    return f"""<h3>Faults and measured effects</h3><table><thead><tr><th>Fault</th><th>Parameters</th><th>Window</th>
<th>Measured effect</th><th>After restore</th><th class="num">Recovery</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>"""


def _key_list(label: str, keys: list[str], *, bad: bool = True) -> str:
    if not keys:
        return ""
    total = len(keys)
    shown = "".join(f"<code>{_e(k)}</code>" for k in keys[:MAX_KEYS])
    more = f' <span class="small">+{total - MAX_KEYS} more in report.json</span>' if total > MAX_KEYS else ""
    return f'<div><b>{_e(label)}</b> ({total})<div class="keys{"" if bad else " neutral"}">{shown}{more}</div></div>'


def _check(s: ScenarioResult) -> str:
    check = s.check
    if not check:
        return '<h3>Data check</h3><p class="small">No data check was run for this scenario.</p>'
    parts = [f'<p class="mono small">{_e(check.get("summary"))}</p>']
    parts.append(_key_list("Lost", [f"{x['key']} @ {x['source']}" for x in check.get("lost", [])]))
    parts.append(_key_list("Duplicated", [f"{x['key']} x{x['count']} @ {x['source']}" for x in check["duplicated"]]))
    parts.append(_key_list("Unexpected", [f"{x['key']} @ {x['source']}" for x in check.get("unexpected", [])]))
    parts.append(
        _key_list(
            "Reordered",
            [f"{x['group']}: {x['seq']} after {x['after_seq']} @ {x['source']}" for x in check.get("reordered", [])],
        )
    )
    parts.append(_key_list("Mismatched", [f"{x['key']}.{x['field']} @ {x['source']}" for x in check["mismatched"]]))
    parts.append(_key_list("Failed but present", check.get("failed_but_present", [])))
    parts.append(
        _key_list("Not yet written (stalled)", [f"{x['key']} @ {x['source']}" for x in check.get("undrained", [])])
    )
    parts.append(
        _key_list(
            "Unreadable (could not be decoded)",
            [f"{x['topic'] or x['source']} {x['partition']}/{x['offset']}: {x['error']}" for x in s.unreadable],
        )
    )
    parts.append(_key_list("Counts that do not add up", s.accounting()))
    parts.append(_key_list("Unknown, maybe committed", check.get("maybe_committed", []), bad=False))
    parts.append(_key_list("Unknown, not committed", check.get("not_committed", []), bad=False))
    return "<h3>Data check</h3>" + "".join(parts)


def _anomalies(s: ScenarioResult) -> str:
    """Third-party anomalies, beside the outcome: what the component claimed and what was found."""
    found = s.check_anomalies
    if not found:
        return ""
    rows = "".join(
        f"<tr><td>{_e(a.get('title'))}<div class='small'>{_e(a.get('party'))}</div></td>"
        f"<td class='mono'>{_e(a.get('subject'))}</td><td>{_kv(a.get('evidence'))}</td></tr>"
        for a in found[:MAX_KEYS]
    )
    more = f'<p class="small">+{len(found) - MAX_KEYS} more in report.json</p>' if len(found) > MAX_KEYS else ""
    return f"""<div class="anomaly"><b>Third-party anomalies ({len(found)})</b> <span class="small">shown beside the
outcome, not part of it: a component broke its own contract</span>
<table><thead><tr><th>Anomaly</th><th>Subject</th><th>Evidence</th></tr></thead><tbody>{rows}</tbody></table>{more}</div>"""


def _scenario(i: int, s: ScenarioResult) -> str:
    end = s.finished_at
    origin = s.started_at
    times = [r["t"] for r in s.series] + [
        t for f in s.faults for t in (f.get("injected_at"), f.get("restored_at")) if t
    ]
    if origin is None and times:
        origin = min(times)
    if times:
        end = max([end or 0.0, max(times) + 1.0])
    chart = ""
    if origin is not None and end is not None and (s.series or s.faults):
        chart = "<h3>Timeline</h3>" + timeline_svg(s.series, s.faults, origin=origin, end=end, chart_id=f"c{i}")
    description = f'<p class="desc">{_e(s.description.strip())}</p>' if s.description.strip() else ""
    if s.decisions:
        description += f'<div class="small">Drawn from the seed: {_kv(s.decisions)}</div>'
    nodeid = f'<p class="meta mono">{_e(s.nodeid)}</p>' if s.nodeid and s.nodeid != s.name else ""
    extras = []
    if s.anomalies:
        extras.append(_key_list("Ledger anomalies", s.anomalies))
    if s.error:
        extras.append(
            f"<details{' open' if s.failure else ''}><summary>Error</summary><pre>{_e(s.error)}</pre></details>"
        )
    if s.stack_dump:
        extras.append(f"<details><summary>Stack dump at timeout</summary><pre>{_e(s.stack_dump)}</pre></details>")
    return f"""<section class="card" id="s{i}">
<div class="head"><div><h2>{_e(s.name)}</h2>{nodeid}<p class="meta">suite <b>{_e(s.suite)}</b></p></div>
<div>{_badge(s.outcome, big=True)}{_expectation(s)}</div></div>
{description}
<div class="reason r-{s.outcome.value}"><div>{_e(s.reason or s.outcome.meaning)}</div>
<div class="action">Action: {_e(s.action)}</div></div>
{_anomalies(s)}
{_metrics(s)}
{chart}
{_faults(s)}
{_check(s)}
{"".join(extras)}
</section>"""


def render_html(run: RunReport) -> str:
    template = Template(resources.files("k2.chaos.report").joinpath("template.html").read_text(encoding="utf-8"))
    body = "\n".join([_header(run), _overview(run), *(_scenario(i, s) for i, s in enumerate(run.scenarios))])
    return template.substitute(title=_e(run.title), body=body, generated=_e(iso(time.time())))


def write_html(run: RunReport, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(render_html(run), encoding="utf-8")
    return path
