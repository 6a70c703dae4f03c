"""Rules over probes: the steady state's bounds and the `--abort-on` stop conditions, in one small grammar.

    lag>30s for 20s          the writers' lag above 30 s for 20 s in a row
    throughput<20% for 10s   acknowledged records a second below 20% of the warm-up baseline for 10 s
    throughput<50/s          below 50 records a second, at once
    p99>2500ms               ack latency p99 above 2.5 s
    query_success<50% for 30s

`PROBE OP VALUE[UNIT] [for DURATION]`: OP is one of < <= > >=; a time probe takes s or ms (s by default),
`throughput` takes /s or % (of the baseline), `query_success` takes %. A rule *holds* while its condition
is true; `Watch` follows one rule over samples and says when it has held for its duration (then an abort
rule stops the run) and records each stretch in which it held (a violation, shown on the timeline).
A sample the probe could not measure (None) neither starts nor ends a stretch.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from k2.explore.errors import AbortRuleError

__all__ = ["STEADY_STATE", "Rule", "Violation", "Watch", "parse_rule"]

PROBE_UNITS = {"throughput": "/s", "p99": "s", "lag": "s", "query_success": "%", "query_p99": "s"}
_OPS: dict[str, Callable[[float, float], bool]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                                  ">=": operator.ge}  # fmt: skip
_RULE = re.compile(
    r"^\s*(?P<probe>[a-z_0-9]+)\s*(?P<op><=|>=|<|>)\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|%|/s)?"
    r"(?:\s+for\s+(?P<hold>\d+(?:\.\d+)?)\s*(?P<hold_unit>ms|s|m)?)?\s*$"
)
_EXAMPLE = "e.g. 'lag>30s for 20s', 'throughput<20% for 10s', 'p99>2s', 'query_success<50% for 30s'"


@dataclass(frozen=True)
class Rule:
    text: str
    probe: str
    op: str
    value: float  # in the probe's unit (seconds, records/s, percent); a fraction of the baseline if relative
    relative: bool  # throughput given in % of the baseline
    hold_s: float

    def threshold(self, baseline: float | None) -> float | None:
        """The bound in the probe's unit; None for a relative rule without a baseline."""
        if not self.relative:
            return self.value
        return None if not baseline else baseline * self.value

    def holds(self, value: float | None, baseline: float | None) -> bool | None:
        """Whether the condition is true for `value`; None when it cannot be told."""
        threshold = self.threshold(baseline)
        if value is None or threshold is None:
            return None
        return _OPS[self.op](value, threshold)

    def __str__(self) -> str:
        return self.text


def parse_rule(text: str, probes: Iterable[str] = PROBE_UNITS) -> Rule:
    """A Rule from its text, or AbortRuleError naming what is wrong and how a rule looks."""
    if not isinstance(text, str) or len(text) > 200:
        raise AbortRuleError(f"rule {text!r}: give a short text, {_EXAMPLE}")
    match = _RULE.match(text)
    if match is None:
        raise AbortRuleError(f"rule {text!r} is not PROBE OP VALUE[UNIT] [for DURATION]; {_EXAMPLE}")
    probe, unit = match["probe"], match["unit"]
    known = list(probes)
    if probe not in known or probe not in PROBE_UNITS:
        raise AbortRuleError(f"rule {text!r}: no probe {probe!r}; the probes are {', '.join(known)}")
    kind = PROBE_UNITS[probe]
    value = float(match["value"])
    relative = False
    if kind == "s":
        if unit not in (None, "s", "ms"):
            raise AbortRuleError(f"rule {text!r}: {probe} is a time; give s or ms (e.g. {probe}>5s)")
        value = value / 1000.0 if unit == "ms" else value
    elif kind == "/s":
        if unit not in (None, "/s", "%"):
            raise AbortRuleError(f"rule {text!r}: throughput is records/s or % of the baseline (e.g. <20%)")
        relative = unit == "%"
        value = value / 100.0 if relative else value
    elif unit not in (None, "%"):
        raise AbortRuleError(f"rule {text!r}: {probe} is a percentage (e.g. {probe}<50%)")
    hold = float(match["hold"] or 0.0) * {"ms": 0.001, "m": 60.0}.get(match["hold_unit"] or "s", 1.0)
    return Rule(" ".join(text.split()), probe, match["op"], value, relative, hold)


# What the steady state is when the user says nothing: violations of these are recorded, never abort a run.
STEADY_STATE = ("throughput<50%", "p99>2s", "lag>10s", "query_success<90%")


@dataclass
class Violation:
    """A stretch of the run in which a rule held."""

    rule: str
    probe: str
    start_s: float
    end_s: float | None = None  # None while it still holds
    worst: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {"rule": self.rule, "probe": self.probe, "start_s": round(self.start_s, 3),
                "end_s": None if self.end_s is None else round(self.end_s, 3),
                "worst": None if self.worst is None else round(self.worst, 4)}  # fmt: skip


@dataclass
class Watch:
    """One rule followed over time (see the module docstring)."""

    rule: Rule
    violations: list[Violation] = field(default_factory=list)
    _since: float | None = None

    def observe(self, t: float, value: float | None, baseline: float | None) -> bool:
        """Feed one sample; True when the rule has now held for at least its duration."""
        holds = self.rule.holds(value, baseline)
        if holds is None:
            return self._since is not None and t - self._since >= self.rule.hold_s
        if holds:
            if self._since is None:
                self._since = t
                self.violations.append(Violation(self.rule.text, self.rule.probe, t, worst=value))
            current = self.violations[-1]
            if value is not None and (current.worst is None or _worse(self.rule.op, value, current.worst)):
                current.worst = value
            return t - self._since >= self.rule.hold_s
        if self._since is not None:
            self.violations[-1].end_s = t
            self._since = None
        return False

    def close(self, t: float) -> None:
        """End an open stretch at the end of the run."""
        if self._since is not None:
            self.violations[-1].end_s = t
            self._since = None


def _worse(op: str, value: float, worst: float) -> bool:
    return value > worst if op in (">", ">=") else value < worst
