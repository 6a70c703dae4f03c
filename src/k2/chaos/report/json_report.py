"""report.json: the complete, machine-readable record of a run (and the source for re-rendering the others)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from k2.chaos.report.model import RunReport

__all__ = ["load_json", "to_json", "write_json"]

SCHEMA_VERSION = 1


def to_json(run: RunReport) -> str:
    data: dict[str, Any] = {"schema_version": SCHEMA_VERSION, **run.to_dict()}
    return json.dumps(data, indent=2, allow_nan=False, default=str) + "\n"


def write_json(run: RunReport, path: str | Path) -> Path:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(to_json(run), encoding="utf-8")
    tmp.replace(path)  # never leave a half-written report behind
    return path


def load_json(path: str | Path) -> RunReport:
    return RunReport.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
