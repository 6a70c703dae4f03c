"""What a run report holds: one ScenarioResult per scenario, gathered in a RunReport.

Plain data (dicts, numbers, strings) so one model feeds every writer and round-trips through report.json,
which lets a report be re-rendered later without re-running anything.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from k2.chaos.checker import CheckResult
from k2.chaos.ledger import Ledger, Op
from k2.chaos.outcome import Outcome, worst
from k2.chaos.report.schedule import fault_schedule

__all__ = [
    "RunReport",
    "ScenarioResult",
    "accounting_problems",
    "fault_recoveries",
    "fault_to_dict",
    "jsonable",
    "recovery_time",
]

_FAULT_FIELDS = (
    "kind",
    "primitive",
    "target",
    "params",
    "duration_s",
    "journal_id",
    "injected_at",
    "restored_at",
    "effect",
    "restore_effect",
    "error",
    "notes",
)


def jsonable(value: Any) -> Any:
    """Turn effects, params and the like into JSON data (enums by value, paths and unknowns as text, no NaN)."""
    if isinstance(value, Enum):
        return jsonable(value.value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)  # typed effects say their own type and summary
        return jsonable(to_dict() if callable(to_dict) else dataclasses.asdict(value))
    if isinstance(value, Path | datetime):
        return str(value)
    return repr(value) if not isinstance(value, bytes) else value.decode("utf-8", "replace")


def fault_to_dict(record: Any) -> dict[str, Any]:
    """A FaultRecord (or a dict or any object with its attributes) as report data."""
    if isinstance(record, Mapping):
        data = dict(record)
    else:
        data = {name: getattr(record, name, None) for name in _FAULT_FIELDS}
    for name in _FAULT_FIELDS:
        data.setdefault(name, None)
    data["params"] = data["params"] or {}
    data["effect"] = data["effect"] or {}
    data["restore_effect"] = data["restore_effect"] or {}
    data["notes"] = data["notes"] or {}
    converted: dict[str, Any] = jsonable(data)
    return converted


def recovery_time(ack_times: Sequence[float], restored_at: float | None) -> float | None:
    """Seconds from a fault's restore to the first acknowledgement at or after it (sorted ack times);
    None when the fault was never restored or nothing was acknowledged after it."""
    if restored_at is None:
        return None
    i = bisect.bisect_left(ack_times, restored_at)
    return ack_times[i] - restored_at if i < len(ack_times) else None


def _traffic_after(ops: Iterable[Op], restored_at: float | None) -> bool:
    """Some operation was started after the restore, or was still in flight at it."""
    if restored_at is None:
        return False
    return any(op.invoked_at >= restored_at or op.completed_at is None or op.completed_at >= restored_at for op in ops)


def _invoked_before(ops: Iterable[Op], injected_at: float | None) -> int | None:
    """How many operations the scenario had started when the fault was injected: when it came, in the
    workload's terms (replayed by the seed; a wall-clock offset is measured and varies run to run)."""
    if injected_at is None:
        return None
    return sum(1 for op in ops if op.invoked_at <= injected_at)


def fault_recoveries(ledger: Ledger | Sequence[float], faults: Iterable[Any]) -> list[float | None]:
    """recovery_time for each fault, from the ledger's acknowledgements (or sorted ack times)."""
    times = ledger.ack_times() if isinstance(ledger, Ledger) else sorted(ledger)
    return [recovery_time(times, fault_to_dict(f)["restored_at"]) for f in faults]


@dataclass
class ScenarioResult:
    """One scenario: its outcome with the reason, the faults and their measured effects, the check, the timeline."""

    name: str
    outcome: Outcome
    expected: list[str] = field(default_factory=lambda: [Outcome.PASS.value])  # what the scenario declares
    nodeid: str = ""
    key: str = ""  # module::test id, the same however it was collected: its name in the fault schedule
    decisions: dict[str, Any] = field(default_factory=dict)  # what the seed chose for its faults, by name
    description: str = ""
    suite: str = "chaos"
    reason: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    duration_s: float = 0.0
    recovery_s: float | None = None  # worst over restored faults
    recovered: bool | None = None  # None: no fault was restored; False: nothing acknowledged after a restore
    faults: list[dict[str, Any]] = field(default_factory=list)
    check: dict[str, Any] | None = None
    counts: dict[str, int] = field(default_factory=dict)  # invoked / acknowledged / failed / unknown / pending
    lost: int = 0
    duplicated: int = 0
    error: str | None = None
    stack_dump: str | None = None
    series: list[dict[str, Any]] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)

    @property
    def acked(self) -> int:
        return self.counts.get("acknowledged", 0)

    @property
    def as_expected(self) -> bool:
        """The outcome is one the scenario declared (PASS unless it said otherwise); never HANG/CRASH/DATA_LOSS."""
        return self.outcome.value in self.expected and not self.outcome.info.failure

    @property
    def failure(self) -> bool:
        """Fails the run: any outcome the scenario did not expect (HANG, CRASH, DATA_LOSS always)."""
        return not self.as_expected

    @property
    def check_anomalies(self) -> list[dict[str, Any]]:
        """Third-party anomalies the checker found (k2.chaos.anomaly), shown beside the outcome."""
        return list((self.check or {}).get("anomalies") or [])

    @property
    def unreadable(self) -> list[dict[str, Any]]:
        """Records a reader found but could not decode, with topic/partition/offset and the error."""
        return list((self.check or {}).get("unreadable") or [])

    def accounting(self) -> list[str]:
        """Ways this scenario's counts fail to add up; [] when they do (see accounting_problems)."""
        return accounting_problems(self.to_dict())

    @property
    def action(self) -> str:
        """What to do: the outcome's action, or for a PASS/FAILED GRACEFULLY the scenario did not expect, why
        that is a failure (the platform behaved differently than documented)."""
        if self.failure and not self.outcome.info.failure:
            wanted = " or ".join(Outcome(o).label for o in self.expected)
            return (
                f"Not as expected ({wanted}): find out why the platform behaved differently, then fix it or the "
                "scenario's documented expectation"
            )
        return self.outcome.action

    @classmethod
    def build(
        cls,
        name: str,
        outcome: Outcome,
        *,
        ledger: Ledger | None = None,
        faults: Iterable[Any] = (),
        check: CheckResult | None = None,
        error: BaseException | str | None = None,
        **fields: Any,
    ) -> ScenarioResult:
        """Assemble a result from the live objects: counts and timeline from the ledger, recovery per fault."""
        fault_dicts = [fault_to_dict(f) for f in faults]
        result = cls(name=name, outcome=Outcome(outcome), faults=fault_dicts, **fields)
        if isinstance(error, BaseException):
            text = str(error).strip()
            result.error = f"{type(error).__name__}: {text}" if text else type(error).__name__
        else:
            result.error = error
        if ledger is not None:
            snap = ledger.snapshot()
            result.counts, result.series, result.anomalies = snap["counts"], snap["series"], snap["anomalies"]
            ops = ledger.ops()
            for fault, rec in zip(fault_dicts, fault_recoveries(ledger, fault_dicts), strict=True):
                fault["recovery_s"] = rec
                fault["traffic_after_restore"] = _traffic_after(ops, fault["restored_at"])
                fault["after_invoked"] = _invoked_before(ops, fault["injected_at"])
            # Only faults with operations in flight or started after their restore can show a recovery: a
            # scenario that stopped sending before the restore (storage faults) has none to judge.
            judged = [f for f in fault_dicts if f["restored_at"] is not None and f["traffic_after_restore"]]
            if judged:
                recs = [f["recovery_s"] for f in judged]
                result.recovered = all(r is not None for r in recs)
                result.recovery_s = max((r for r in recs if r is not None), default=None)
        if check is not None:
            result.check = check.to_dict()
            result.lost = len({x.key for x in check.lost})
            result.duplicated = len({x.key for x in check.duplicated})
        if result.started_at is not None and result.finished_at is not None and not result.duration_s:
            result.duration_s = max(0.0, result.finished_at - result.started_at)
        return result

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = jsonable({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        data["outcome"] = self.outcome.value
        data["outcome_label"] = self.outcome.label
        data["action"] = self.action
        data["as_expected"] = self.as_expected
        data["acked"] = self.acked
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScenarioResult:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["outcome"] = Outcome(kwargs["outcome"])
        return cls(**kwargs)


@dataclass
class RunReport:
    """A whole run: the seed that replays it, the stack it ran on, and every scenario."""

    seed: int | None
    started_at: float
    finished_at: float | None = None
    backend: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    scenarios: list[ScenarioResult] = field(default_factory=list)
    title: str = "K2 chaos report"

    @property
    def outcome(self) -> Outcome:
        return worst(s.outcome for s in self.scenarios)

    @property
    def failed(self) -> bool:
        """True when any scenario ended other than it expected (hung, crashed, lost data, or passed where it
        expected the platform to fail gracefully): the run's exit status."""
        return any(s.failure for s in self.scenarios)

    def counts(self) -> dict[str, int]:
        counter = Counter(s.outcome for s in self.scenarios)
        return {o.value: counter.get(o, 0) for o in Outcome}

    @property
    def duration_s(self) -> float:
        return max(0.0, (self.finished_at or self.started_at) - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "seed": self.seed,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "started": iso(self.started_at),
            "finished": iso(self.finished_at),
            "duration_s": self.duration_s,
            "backend": self.backend,
            "versions": jsonable(self.versions),
            "outcome": self.outcome.value,
            "failed": self.failed,
            "counts": self.counts(),
            "fault_schedule": fault_schedule(self),
            "scenarios": [s.to_dict() for s in self.scenarios],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunReport:
        return cls(
            seed=data.get("seed"),
            started_at=data["started_at"],
            finished_at=data.get("finished_at"),
            backend=data.get("backend", ""),
            versions=dict(data.get("versions") or {}),
            scenarios=[ScenarioResult.from_dict(s) for s in data.get("scenarios", [])],
            title=data.get("title", "K2 chaos report"),
        )


def merge_runs(parts: Sequence[RunReport]) -> RunReport:
    """One report of a run split over several stacks (k2.chaos.shards): every scenario, in the order they
    started, under the seed they all shared (its fault schedule is in name order, as every run's)."""
    seeds = {part.seed for part in parts}
    if len(seeds) != 1:
        raise ValueError(f"the parts of one run must share one seed, these have {sorted(map(str, seeds))}")
    scenarios = sorted((s for part in parts for s in part.scenarios), key=lambda s: s.started_at or 0.0)
    return RunReport(
        seed=parts[0].seed,
        started_at=min(part.started_at for part in parts),
        finished_at=max((part.finished_at or part.started_at) for part in parts),
        backend=parts[0].backend,
        versions={k: v for part in parts for k, v in part.versions.items()},
        scenarios=scenarios,
        title=parts[0].title,
    )


_STATES = ("acknowledged", "failed", "unknown", "pending")


def accounting_problems(scenario: Mapping[str, Any]) -> list[str]:
    """Where a scenario's report (as in report.json) does not add up: the ledger's counts, and the checker's,
    must each satisfy invoked = acknowledged + failed + unknown + pending; the checker classifies every
    operation once (failed = absent + present, unknown + pending = maybe + not committed); and the checker
    cannot have seen more operations than the ledger ended with."""
    problems = []
    check = scenario.get("check") or {}
    ledger, checked = scenario.get("counts") or {}, check.get("counts") or {}
    for who, counts in (("ledger", ledger), ("checker", checked)):
        states = sum(counts.get(k, 0) for k in _STATES)
        if counts and counts.get("invoked") != states:
            problems.append(f"{who}: invoked {counts.get('invoked')} != acknowledged + failed + unknown + pending")
    problems += [f"checker: {p}" for p in check.get("accounting") or []]
    if ledger and checked.get("invoked", 0) > ledger.get("invoked", 0):
        problems.append(f"the checker saw {checked['invoked']} operations, the ledger ended with {ledger['invoked']}")
    return problems


def iso(t: float | None) -> str | None:
    """Epoch seconds as an ISO-8601 UTC timestamp (seconds precision)."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
