"""What a primitive measured, as typed records: one per capability and direction (inject / restore).

Every backend fills the same typed fields, so a test, a report or the explorer reads `effect.frozen` or
`effect.fullness` on any backend. What only one backend can show (a cgroup path, a container's networks)
goes in `detail`: evidence that reports print and the journal keeps, never read back by K2 itself.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

__all__ = [
    "Effect",
    "Filled",
    "Freed",
    "Frozen",
    "Healed",
    "Limited",
    "Partitioned",
    "Shaped",
    "Skewed",
    "Started",
    "Stopped",
    "Thawed",
    "Unlimited",
    "Unskewed",
    "measure",
]

E = TypeVar("E", bound="Effect")


@dataclass(frozen=True, kw_only=True)
class Effect:
    """Common to every effect: which primitive ran on which target (and backend), when, how long it took,
    and whether it changed anything (False: an idempotent inverse found nothing to undo)."""

    primitive: str
    target: str
    backend: str
    started_at: float  # wall clock, seconds since the epoch
    duration_s: float  # monotonic
    changed: bool = True
    detail: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for a report; subclasses say what was measured."""
        return self.primitive if self.changed else f"{self.primitive}: nothing to do"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, with the record's type and its summary (the journal and report.json keep this)."""
        return {"type": type(self).__name__, "summary": self.summary(), **asdict(self)}


def measure(cls: type[E], primitive: str, target: str, backend: str, t0: float, wall: float, **fields: Any) -> E:
    """An effect of `cls` for a primitive that started at monotonic `t0` / wall clock `wall`."""
    return cls(primitive=primitive, target=target, backend=backend, started_at=wall,
               duration_s=time.monotonic() - t0, **fields)  # fmt: skip


def _how(mechanism: str | None) -> str:
    return f" by {mechanism}" if mechanism else ""


def _answer(answered: bool | None) -> str:
    return "" if answered is None else ("; probe answered" if answered else "; probe unanswered")


# -- lifecycle: stop / kill -> start -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Stopped(Effect):
    """The service is gone: `signal` sent, `escalated` when a graceful stop had to end in SIGKILL."""

    signal: str
    gone: bool
    escalated: bool = False
    exit_code: int | None = None
    exit_s: float | None = None

    def summary(self) -> str:
        how = f"{self.signal}" + (", then SIGKILL" if self.escalated else "")
        return f"{'gone' if self.gone else 'still running'} after {how}" + (
            f" in {self.exit_s:.3f}s" if self.exit_s is not None else ""
        )


@dataclass(frozen=True, kw_only=True)
class Started(Effect):
    """Running again (or `already_running`); `answered` is its health probe once started."""

    already_running: bool = False
    ready_s: float | None = None
    answered: bool | None = None
    pid: int | None = None
    previous_pid: int | None = None

    def summary(self) -> str:
        if self.already_running:
            return "already running"
        ready = f" in {self.ready_s:.2f}s" if self.ready_s is not None else ""
        return f"started{ready}" + _answer(self.answered)


# -- freeze: pause -> resume ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Frozen(Effect):
    """Every process of the service frozen (`freezer_state` as the kernel reads it, when visible); `mechanism`
    says how where a backend has several (a local process: cgroup-v1, cgroup-v2 or sigstop)."""

    frozen: bool
    freezer_state: str | None = None
    answered: bool | None = None
    mechanism: str | None = None

    def summary(self) -> str:
        state = f" (freezer {self.freezer_state})" if self.freezer_state else ""
        return f"{'frozen' if self.frozen else 'NOT frozen'}{state}" + _how(self.mechanism) + _answer(self.answered)


@dataclass(frozen=True, kw_only=True)
class Thawed(Effect):
    freezer_state: str | None = None
    answered: bool | None = None
    mechanism: str | None = None

    def summary(self) -> str:
        return ("thawed" if self.changed else "was not frozen") + _how(self.mechanism) + _answer(self.answered)


# -- limits: limit -> unlimit ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Limited(Effect):
    """The limits as read back from the kernel (or the engine) after setting them; `cpu_mechanism` and
    `mem_mechanism` say how where a backend has several (a local process: cgroup-v1, cgroup-v2, duty-cycle,
    rlimit)."""

    cpu_quota_us: int | None = None
    cpu_period_us: int | None = None
    mem_bytes: int | None = None
    cpu_mechanism: str | None = None
    mem_mechanism: str | None = None

    def summary(self) -> str:
        parts = []
        if self.cpu_quota_us is not None:
            parts.append(f"cpu {self.cpu_quota_us}/{self.cpu_period_us} µs{_how(self.cpu_mechanism)}")
        if self.mem_bytes is not None:
            parts.append(f"memory {self.mem_bytes} B{_how(self.mem_mechanism)}")
        return "limited: " + ", ".join(parts or ["nothing"])


@dataclass(frozen=True, kw_only=True)
class Unlimited(Effect):
    """Previous limits back (`restored`), and what the limits did while held (None: not observable)."""

    restored: bool = True
    throttled_periods: int | None = None
    throttled_ns: int | None = None
    oom_kills: int | None = None
    peak_mem_bytes: int | None = None
    cpu_mechanism: str | None = None
    mem_mechanism: str | None = None

    def summary(self) -> str:
        seen = [f"{k} {v}" for k, v in (("throttled periods", self.throttled_periods),
                ("OOM kills", self.oom_kills), ("peak memory B", self.peak_mem_bytes)) if v is not None]  # fmt: skip
        head = "previous limits back" if self.restored else "previous limits NOT back"
        how = [f"{what}{_how(m)}" for what, m in (("cpu", self.cpu_mechanism), ("memory", self.mem_mechanism)) if m]
        return head + (f" ({', '.join(how)})" if how else "") + (f"; while held: {', '.join(seen)}" if seen else "")


# -- network: isolate -> rejoin, shape -> unshape --------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Partitioned(Effect):
    """Cut off: `new_connections` is what a fresh connection got ("refused", "reset", ...) when tried."""

    mode: str
    direction: str = "both"
    clients: tuple[str, ...] | None = None
    new_connections: str | None = None
    answered: bool | None = None

    def summary(self) -> str:
        who = f" for {', '.join(self.clients)}" if self.clients else ""
        conn = f"; new connections {self.new_connections}" if self.new_connections else ""
        return f"partitioned ({self.mode}, {self.direction}){who}{conn}" + _answer(self.answered)


@dataclass(frozen=True, kw_only=True)
class Shaped(Effect):
    """Traffic shaped; the probe's round trip before and with the shaping, in ms (None: no answer)."""

    toxic: str
    stream: str = "downstream"
    attributes: Mapping[str, Any] = field(default_factory=dict)
    rtt_ms_before: float | None = None
    rtt_ms_with: float | None = None

    def summary(self) -> str:
        rtt = f"; probe {self.rtt_ms_before} -> {self.rtt_ms_with} ms" if self.rtt_ms_with is not None else ""
        return f"{self.toxic} on {self.stream} {dict(self.attributes)}{rtt}"


@dataclass(frozen=True, kw_only=True)
class Healed(Effect):
    """Network back as before: `leftovers` names anything of K2's still in place (empty when healed)."""

    leftovers: tuple[str, ...] = ()
    answered: bool | None = None

    def summary(self) -> str:
        head = "healed" if not self.leftovers else f"NOT healed: {', '.join(self.leftovers)} left"
        return (head if self.changed else "nothing to heal") + _answer(self.answered)


# -- disk: fill_disk -> free_disk -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Filled(Effect):
    """The filesystem at `path` after writing `bytes_written` into `file`; `fullness` = used / total (df)."""

    path: str
    file: str | None = None
    bytes_written: int | None = None
    fullness: float | None = None  # None where a backend fails writes instead of filling (Chaos Mesh's ENOSPC)
    avail_bytes: int | None = None

    def summary(self) -> str:
        if self.fullness is None:
            return f"{self.path}: writes fail with ENOSPC"
        return f"{self.path} {self.fullness:.1%} full ({self.avail_bytes} B left)"


@dataclass(frozen=True, kw_only=True)
class Freed(Effect):
    removed: tuple[str, ...] = ()
    fullness: float | None = None

    def summary(self) -> str:
        after = f", now {self.fullness:.1%} full" if self.fullness is not None else ""
        return f"removed {len(self.removed)} fill file(s){after}"


# -- clock: skew_clock -> unskew (declared; the first backend comes with issue #14) ----------------


@dataclass(frozen=True, kw_only=True)
class Skewed(Effect):
    """The service's clock offset asked for and the one observed from outside (None: not observable)."""

    offset_seconds: float
    observed_offset_s: float | None = None

    def summary(self) -> str:
        seen = f" (observed {self.observed_offset_s:+.3f}s)" if self.observed_offset_s is not None else ""
        return f"clock {self.offset_seconds:+g}s{seen}"


@dataclass(frozen=True, kw_only=True)
class Unskewed(Effect):
    observed_offset_s: float | None = None

    def summary(self) -> str:
        seen = f" (observed {self.observed_offset_s:+.3f}s)" if self.observed_offset_s is not None else ""
        return f"clock true again{seen}"
