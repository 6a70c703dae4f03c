"""The end-of-run summary in the terminal: one row per scenario, the worst news visible at a glance.

It must read in an 80-column terminal and in CI logs (80 columns when not a terminal): the numbers take what
they need, the scenario's name takes the rest and wraps only where a reader would (after `_`, before a
parametrize id's `[`), never inside a word, and is printed as plain text (a parametrize id like `[x]` is not
console markup). Its faults follow it in the same cell. The full node id is in report.json, junit.xml and
report.html.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from k2.chaos.anomaly import summarize
from k2.chaos.outcome import Outcome
from k2.chaos.report.model import RunReport, ScenarioResult

__all__ = ["fault_windows", "format_recovery", "print_summary", "summary_table", "wrap_name"]

MIN_NAME_WIDTH = 16
# Break after a separator, or before a parametrize id; the pieces between are words and stay whole.
_BREAKS = re.compile(r"(?<=[_\-./:])|(?=\[)")


def format_recovery(s: ScenarioResult) -> str:
    if s.recovered is None:
        return "-"
    if not s.recovered:
        return "never"
    return f"{s.recovery_s:.2f}s" if s.recovery_s is not None else "-"


def _fault_window(fault: dict[str, Any], origin: float | None) -> str:
    label = f"{fault.get('kind')} {fault.get('target')}"
    start, end = fault.get("injected_at"), fault.get("restored_at")
    if start is None:
        return f"{label} (not injected{': ' + fault['error'] if fault.get('error') else ''})"
    base = origin if origin is not None else start
    window = f"+{start - base:.1f}s"
    window += f"..+{end - base:.1f}s" if end is not None else ".. (not restored)"
    return f"{label} {window}" + (" !" if fault.get("error") else "")


def fault_windows(s: ScenarioResult) -> list[str]:
    """Each fault as 'kind target +start..+end' relative to the scenario's start."""
    return [_fault_window(f, s.started_at) for f in s.faults]


def _fill(text: str, width: int, lines: list[str]) -> list[str]:
    """Greedy fill of `text`'s words, continuing on the last of `lines`; a word wider than `width` is the
    only thing ever cut, as nothing else would fit."""
    line = lines.pop() if lines else ""
    for word in filter(None, _BREAKS.split(text)):
        if line and cell_len(line) + cell_len(word) > width:
            lines.append(line)
            line = ""
        while cell_len(word) > width:
            lines.append(word[:width])
            word = word[width:]
        line += word
    lines.append(line)
    return lines


def wrap_name(name: str, width: int) -> list[str]:
    """`name` in lines of at most `width` cells, broken only between words; a parametrize id (`[...]`) stays
    on one line whenever it fits on one."""
    base, bracket, param = name.partition("[")
    lines = _fill(base, width, [])
    if not bracket:
        return lines
    param = bracket + param
    if cell_len(lines[-1]) + cell_len(param) <= width:
        lines[-1] += param
    elif cell_len(param) <= width:
        lines.append(param)
    else:
        lines = _fill(param, width, lines)
    return lines


def _outcome_cell(s: ScenarioResult) -> Text:
    text = Text(s.outcome.label, style=f"bold {s.outcome.info.colour}")
    if s.failure and not s.outcome.info.failure:  # a PASS or FAILED GRACEFULLY the scenario did not expect
        text.append("\nUNEXPECTED", style="bold red")
    elif s.expected != [Outcome.PASS.value]:
        text.append("\n(expected)", style="dim")
    return text


def _table(title: str, name_width: int) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0))
    table.add_column("Scenario", width=name_width, overflow="fold")
    table.add_column("Outcome", max_width=10)  # FAILED GRACEFULLY takes two lines rather than 7 more columns
    table.add_column("Recovery", justify="right", no_wrap=True)
    table.add_column("Acked", justify="right", no_wrap=True)
    table.add_column("Lost", justify="right", no_wrap=True)
    table.add_column("Dup", justify="right", no_wrap=True)
    table.add_column("Time", justify="right", no_wrap=True)
    return table


def _add_rows(table: Table, run: RunReport, name_width: int) -> None:
    for s in run.scenarios:
        name = Text("\n".join(wrap_name(s.name, name_width)))
        for window in fault_windows(s):
            lines = textwrap.wrap(window, name_width, initial_indent="  ", subsequent_indent="    ",
                                  break_on_hyphens=False, break_long_words=False)  # fmt: skip
            name.append("\n" + "\n".join(lines), style="dim")
        table.add_row(
            name,
            _outcome_cell(s),
            format_recovery(s),
            str(s.acked),
            Text(str(s.lost), style="bold red" if s.lost else ""),
            Text(str(s.duplicated), style="bold red" if s.duplicated else ""),
            f"{s.duration_s:.1f}s",
        )


def summary_table(run: RunReport, width: int = 80) -> Table:
    """The table for a console `width` columns wide: the name column gets what the others leave."""
    probe = _table(run.title, 1)
    _add_rows(probe, run, 1)
    console = Console(width=max(width, 200))
    others = Measurement.get(console, console.options, probe).maximum - 1
    name_width = max(MIN_NAME_WIDTH, width - others)
    table = _table(run.title, name_width)
    _add_rows(table, run, name_width)
    return table


def _expectation(s: ScenarioResult) -> str:
    if s.failure and not s.outcome.info.failure:
        return f" (UNEXPECTED: expected {' or '.join(Outcome(o).label for o in s.expected)})"
    return " (expected)" if s.expected != [Outcome.PASS.value] else ""


def print_summary(run: RunReport, console: Console) -> None:
    """Print the table, then one line per scenario that did not simply pass with its reason and action, then
    the verdict and how to replay the run."""
    console.print(summary_table(run, console.width))
    for s in run.scenarios:
        if s.outcome is Outcome.PASS and s.as_expected:
            if s.check_anomalies:  # a failing scenario's reason already names them
                console.print(Text.assemble(("ANOMALY", "bold yellow"), f" {s.name}: {summarize(s.check_anomalies)}"))
            continue
        colour = s.outcome.info.colour
        head = Text.assemble((s.outcome.label, f"bold {colour}"), (_expectation(s), "bold red" if s.failure else ""))
        console.print(Text.assemble(head, f" {s.name}: {s.reason or s.error or ''}"))
        console.print(Text(f"    action: {s.action}", style="dim"))
    counts = run.counts()
    totals = ", ".join(f"{n} {Outcome(k).label.lower()}" for k, n in counts.items() if n)
    unexpected = sum(s.failure for s in run.scenarios)
    verdict = ("FAILED", "bold red") if run.failed else ("OK", "bold green")
    console.print(
        Text.assemble(
            verdict,
            f" {len(run.scenarios)} scenarios: {totals or 'none'}",
            f"; {unexpected} not as expected" if unexpected else "; all as expected",
            f"; seed {run.seed}; {run.backend}",
        )
    )
    console.print(Text(f"replay: k2 chaos run --seed {run.seed}  (pytest: --chaos-seed {run.seed})", style="dim"))
