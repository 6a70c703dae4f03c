"""The explore report: report.json (everything, including the schedule to replay) and report.html.

Written twice: once before the run starts (status `scheduled`: the schedule with every drawn value is on
disk even if the runner is killed), and again at the end with the verdict, the timeline (a sample per
second, the per-second traffic, the faults as planned and as injected, violations, events) and the check.
`--replay` and `k2 chaos shrink` read the schedule back with `load_schedule`, as strictly as any input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2.explore.errors import ExploreError, ScheduleError
from k2.explore.files import prepare_dir, read_json, write_atomic
from k2.explore.schedule import Schedule

if TYPE_CHECKING:
    from k2.explore.explorer import ExploreResult

__all__ = ["REPORT_VERSION", "load_report", "load_schedule", "report_dict", "write_report"]

REPORT_VERSION = 1
_KEY = "k2_explore_report"


def _fault_rows(result: ExploreResult | None, planned: dict[int, Any], origin: float) -> list[dict[str, Any]]:
    """Each planned fault with what became of it: when it was injected and restored (seconds into the run),
    the effect measured, or why it was not injected."""
    if result is None:
        return []
    rows = []
    for fault in result.schedule.faults:
        record = planned.get(fault.index)
        row: dict[str, Any] = {**fault.to_dict(), "status": result.injected.get(fault.index, "not reached")}
        if record is not None:
            row.update(
                injected_s=_rel(record.injected_at, origin),
                restored_s=_rel(record.restored_at, origin),
                effect=_plain(record.effect),
                restore_effect=_plain(record.restore_effect),
                error=record.error,
            )
        rows.append(row)
    return rows


def _rel(t: float | None, origin: float) -> float | None:
    return None if t is None else round(t - origin, 3)


def _plain(value: Any) -> Any:
    """Effects as plain data whatever their type (a dict today, a typed record with to_dict tomorrow)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def report_dict(
    schedule: Schedule,
    result: ExploreResult | None,
    *,
    status: str,
    context: dict[str, Any],
    planned: dict[int, Any] | None = None,
) -> dict[str, Any]:
    """The whole report as plain data (see the module docstring)."""
    doc: dict[str, Any] = {
        _KEY: REPORT_VERSION,
        "status": status,
        **context,
        "schedule": schedule.to_dict(),
        "verdict": None,
        "run": None,
    }
    if result is None:
        return doc
    data = result.data
    origin = data.started_at
    drain = data.drain
    doc["verdict"] = None if result.verdict is None else result.verdict.to_dict()
    doc["run"] = {
        "run_id": data.run_id,
        "started_at": data.started_at,
        "finished_at": data.finished_at,
        "baseline_per_s": data.baseline,
        "phases_s": data.phases,
        "faults": _fault_rows(result, planned or {}, origin),
        "violations": [v.to_dict() for v in result.violations],
        "events": [e.to_dict() for e in data.events],
        "samples": [s.to_dict() for s in data.samples],
        "series": data.series,
        "drain": None
        if drain is None
        else {
            "caught_up": drain.caught_up,
            "waited_s": round(drain.waited_s, 3),
            "behind": {str(k): v for k, v in drain.behind.items()},
        },
    }
    plain: dict[str, Any] = json.loads(json.dumps(doc, allow_nan=False, default=str))
    return plain


def write_report(directory: Path, doc: dict[str, Any]) -> dict[str, Path]:
    """report.json and report.html in `directory` (created if needed; see k2.explore.files)."""
    from k2.explore.html import render_html

    directory = prepare_dir(directory)
    text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    return {
        "json": write_atomic(directory, "report.json", text),
        "html": write_atomic(directory, "report.html", render_html(doc)),
    }


def load_report(path: Path) -> tuple[dict[str, Any], Schedule]:
    """A report (or a bare schedule) read back: the document and its validated schedule."""
    doc = read_json(path)
    if isinstance(doc, dict) and _KEY in doc:
        if doc[_KEY] != REPORT_VERSION:
            raise ExploreError(f"{path}: report version {doc[_KEY]!r} is not {REPORT_VERSION}; re-run explore")
        raw = doc.get("schedule")
    elif isinstance(doc, dict) and "faults" in doc and "seed" in doc:
        raw, doc = doc, {"schedule": doc, "verdict": None, "status": "schedule"}
    else:
        raise ExploreError(f"{path} is neither an explore report nor a schedule; pass the report.json explore wrote")
    try:
        return doc, Schedule.from_dict(raw)
    except ScheduleError as exc:
        raise ScheduleError(f"{path}: {exc}") from None


def load_schedule(path: Path) -> Schedule:
    return load_report(path)[1]
