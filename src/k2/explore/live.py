"""Live progress in the terminal while an exploration runs (rich): time, active faults, the probes' latest
values against the baseline, and violations so far. Not a terminal (CI logs): one plain line every
`every_s` seconds instead of a redrawn panel.
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from k2.explore.run import Progress

__all__ = ["LiveView"]


def _value(values: dict[str, float | None], name: str, fmt: str) -> str:
    value = values.get(name)
    return "?" if value is None else fmt.format(value)


def summary_line(p: Progress) -> str:
    """One line: elapsed/total, active faults, throughput vs baseline, p99, lag, queries, violations."""
    base = f" (baseline {p.baseline:.0f}/s)" if p.baseline else ""
    active = ", ".join(p.active) or "none"
    when = f"+{p.elapsed_s:5.0f}s/{p.duration_s:g}s" if p.elapsed_s <= p.duration_s else f"+{p.elapsed_s:5.0f}s ending"
    return (
        f"{when}  faults: {active}  throughput "
        f"{_value(p.values, 'throughput', '{:.0f}/s')}{base}  p99 {_value(p.values, 'p99', '{:.2f}s')}  "
        f"lag {_value(p.values, 'lag', '{:.1f}s')}  queries {_value(p.values, 'query_success', '{:.0f}%')}  "
        f"violations {p.violations}"
    )


class LiveView:
    def __init__(self, console: Console, title: str, *, every_s: float = 10.0) -> None:
        self.console, self.title, self.every_s = console, title, every_s
        self._live: Live | None = None
        self._last_line = 0.0

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            self._live = Live(Text(f"{self.title}: starting the workload..."), console=self.console,
                              refresh_per_second=4, transient=False)  # fmt: skip
            self._live.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)

    def update(self, p: Progress) -> None:
        if self._live is None:
            now = time.monotonic()
            if now - self._last_line >= self.every_s:
                self._last_line = now
                self.console.print(summary_line(p), highlight=False, soft_wrap=True)
            return
        self._live.update(self._render(p))

    def _render(self, p: Progress) -> Group:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        base = f"  (baseline {p.baseline:.0f}/s)" if p.baseline else ""
        table.add_row("active faults", ", ".join(p.active) or "[dim]none[/]")
        table.add_row("throughput", _value(p.values, "throughput", "{:.0f}/s") + base)
        table.add_row("ack p99", _value(p.values, "p99", "{:.2f} s"))
        table.add_row("writers' lag", _value(p.values, "lag", "{:.1f} s"))
        table.add_row("queries", _value(p.values, "query_success", "{:.0f}% answered"))
        table.add_row("violations", f"[{'yellow' if p.violations else 'green'}]{p.violations}[/]")
        for event in p.events:
            table.add_row("", f"[dim]{event}[/]")
        left = p.duration_s - p.elapsed_s
        state = f"{left:.0f}s left" if left >= 0 else "ending: the last faults are being restored"
        head = Text(f"{self.title}  +{p.elapsed_s:.0f}s elapsed, {state}", style="bold")
        return Group(head, ProgressBar(total=p.duration_s, completed=min(p.elapsed_s, p.duration_s), width=60), table)
