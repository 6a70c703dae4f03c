"""Reports of a chaos run: terminal summary, report.json, junit.xml and a self-contained report.html."""

from __future__ import annotations

import logging
from pathlib import Path

from k2.chaos.report.html import render_html, write_html
from k2.chaos.report.json_report import load_json, to_json, write_json
from k2.chaos.report.junit import to_junit, write_junit
from k2.chaos.report.model import (
    RunReport,
    ScenarioResult,
    fault_recoveries,
    fault_to_dict,
    merge_runs,
    recovery_time,
)
from k2.chaos.report.terminal import print_summary, summary_table

__all__ = [
    "RunReport",
    "ScenarioResult",
    "fault_recoveries",
    "fault_to_dict",
    "load_json",
    "merge_runs",
    "print_summary",
    "recovery_time",
    "render_html",
    "summary_table",
    "to_json",
    "to_junit",
    "write_html",
    "write_json",
    "write_junit",
    "write_reports",
]

log = logging.getLogger(__name__)


def write_reports(run: RunReport, directory: str | Path) -> dict[str, Path]:
    """Write report.json, junit.xml and report.html into `directory` (created if needed); returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": write_json(run, directory / "report.json"),
        "junit": write_junit(run, directory / "junit.xml"),
        "html": write_html(run, directory / "report.html"),
    }
    log.info("chaos reports written: %s", ", ".join(str(p) for p in paths.values()))
    return paths
