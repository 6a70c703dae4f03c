"""The end-of-run summary in the terminal: one row per scenario, the worst news visible at a glance."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from k2.chaos.anomaly import summarize
from k2.chaos.outcome import Outcome
from k2.chaos.report.model import RunReport, ScenarioResult

__all__ = ["fault_windows", "format_recovery", "print_summary", "summary_table"]


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


def summary_table(run: RunReport) -> Table:
    table = Table(title=run.title, title_justify="left", show_lines=False, expand=False)
    table.add_column("Scenario", overflow="fold", ratio=3)
    table.add_column("Outcome", no_wrap=True)
    table.add_column("Recovery", justify="right", no_wrap=True)
    table.add_column("Acked", justify="right")
    table.add_column("Lost", justify="right")
    table.add_column("Dup", justify="right")
    table.add_column("Time", justify="right", no_wrap=True)
    table.add_column("Faults", overflow="fold", ratio=2)
    for s in run.scenarios:
        colour = s.outcome.info.colour
        table.add_row(
            s.name,
            Text(s.outcome.label, style=f"bold {colour}"),
            format_recovery(s),
            str(s.acked),
            Text(str(s.lost), style="bold red" if s.lost else ""),
            Text(str(s.duplicated), style="bold red" if s.duplicated else ""),
            f"{s.duration_s:.1f}s",
            "\n".join(fault_windows(s)) or "-",
        )
    return table


def print_summary(run: RunReport, console: Console) -> None:
    """Print the table, then one line per failing scenario with its reason and action, then the totals."""
    console.print(summary_table(run))
    for s in run.scenarios:
        if s.outcome is not Outcome.PASS:
            colour = s.outcome.info.colour
            console.print(Text.assemble((s.outcome.label, f"bold {colour}"), f" {s.name}: {s.reason or s.error or ''}"))
            console.print(Text(f"    action: {s.outcome.action}", style="dim"))
        elif s.check_anomalies:  # a failing scenario's reason already names them
            console.print(Text.assemble(("ANOMALY", "bold yellow"), f" {s.name}: {summarize(s.check_anomalies)}"))
    counts = run.counts()
    totals = ", ".join(f"{n} {Outcome(k).label.lower()}" for k, n in counts.items() if n)
    verdict = ("FAILED", "bold red") if run.failed else ("OK", "bold green")
    console.print(
        Text.assemble(verdict, f" {len(run.scenarios)} scenarios: {totals or 'none'}; seed {run.seed}; {run.backend}")
    )
