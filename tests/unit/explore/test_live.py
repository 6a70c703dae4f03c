"""The live progress view: the panel a terminal redraws, and the throttled plain lines a CI log gets."""

from __future__ import annotations

import io

from rich.console import Console

from k2.explore.live import LiveView
from k2.explore.run import Progress


def progress(elapsed_s: float, active: list[str], violations: int = 0) -> Progress:
    values: dict[str, float | None] = {"throughput": 150.0, "p99": 0.42, "lag": 6.5, "query_success": None}
    return Progress(elapsed_s, 60.0, active, values, 200.0, violations, ["injected #0 network_partition postgres"])


def test_terminal_panel_shows_time_faults_probes_and_violations() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    with LiveView(console, "explore seed 7") as view:
        view.update(progress(12.0, ["network_partition postgres", "service_failure writer-1"], violations=2))
    text = out.getvalue()
    for shown in ("explore seed 7", "+12s elapsed, 48s left", "network_partition postgres, service_failure writer-1",
                  "150/s  (baseline 200/s)", "0.42 s", "6.5 s", "?", "violations", "2"):  # fmt: skip
        assert shown in text, (shown, text)


def test_a_log_gets_one_line_per_period_not_one_per_second() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=300)
    with LiveView(console, "explore seed 7", every_s=3600.0) as view:
        for second in range(5):
            view.update(progress(float(second), [] if second < 3 else ["service_failure kafka"]))
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "+    0s/60s  faults: none  throughput 150/s (baseline 200/s)  p99 0.42s  lag 6.5s  queries ?" in lines[0]
