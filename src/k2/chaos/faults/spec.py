"""A fault as a value: what (kind and parameters), where (a service name), how long. Frozen and validated
when built, before anything is touched; the same spec can be injected any number of times.

A spec says which capability it needs and how to apply and undo itself on a target that has it; the
session finds that target and journals the primitive (see `k2.chaos.session` and `.injection`).
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Generic, TypeVar

from k2.chaos.effects import Effect
from k2.chaos.errors import InvalidFault
from k2.chaos.targets.capabilities import Capability, Probe

__all__ = ["MAX_DURATION_S", "FaultSpec", "validate_duration"]

MAX_DURATION_S = 24 * 3600
_SERVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

C = TypeVar("C")


def validate_duration(value: object, what: str = "duration_seconds") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InvalidFault(f"{what}={value!r}: give a number of seconds (or None to hold until the block exits)")
    if value <= 0:
        raise InvalidFault(f"{what}={value} must be positive: give the outage length in seconds")
    if value > MAX_DURATION_S:
        raise InvalidFault(f"{what}={value} is more than a day: chaos faults are meant to end; give a shorter one")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class FaultSpec(ABC, Generic[C]):
    """One kind of fault. A subclass sets `kind`, declares its parameters as fields, validates them in
    `check()` and applies itself through the capability `C` it needs."""

    kind: ClassVar[str]
    registry: ClassVar[dict[str, type[FaultSpec[Any]]]] = {}

    target: str
    duration_s: float | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            FaultSpec.registry[cls.kind] = cls

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not _SERVICE_RE.match(self.target):
            raise InvalidFault(f"{self.kind}: target {self.target!r} is not a service name (e.g. 'kafka')")
        object.__setattr__(self, "duration_s", validate_duration(self.duration_s))
        self.check()

    def _set(self, name: str, value: object) -> None:
        """Store a normalised parameter (the dataclass is frozen to everyone else)."""
        object.__setattr__(self, name, value)

    # -- what a subclass provides ----------------------------------------------------------------

    def check(self) -> None:
        """Validate (and normalise) the parameters; raise `InvalidFault` naming the parameter and the remedy."""

    @property
    @abstractmethod
    def capability(self) -> Capability:
        """What the fault needs of the service's backend."""

    @property
    @abstractmethod
    def primitive(self) -> str:
        """The capability's primitive that injects it (the journal records it and its inverse)."""

    @abstractmethod
    def arguments(self) -> dict[str, Any]:
        """The primitive's journaled arguments (JSON-able)."""

    @abstractmethod
    def apply(self, target: C, probe: Probe | None) -> Effect:
        """Inject on `target` (which has `capability`), verified; `probe` is the service's health check."""

    @abstractmethod
    def undo(self, target: C, probe: Probe | None) -> Effect:
        """The inverse, verified (the journal calls the same inverse without arguments after a crash)."""

    # -- shared ----------------------------------------------------------------------------------

    def parameters(self) -> dict[str, Any]:
        """The kind's parameters (everything but target and duration), as reports and the catalogue show them."""
        skip = {"target", "duration_s"}
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name not in skip}

    def describe(self) -> dict[str, Any]:
        """The whole spec as plain data: kind, target, duration and parameters (rebuilt by `from_description`)."""
        return {"kind": self.kind, "target": self.target, "duration_s": self.duration_s, **self.parameters()}

    @staticmethod
    def from_description(desc: dict[str, Any]) -> FaultSpec[Any]:
        """Rebuild (and re-validate) a spec from `describe()` output."""
        values = dict(desc)
        kind = values.pop("kind", None)
        cls = FaultSpec.registry.get(str(kind))
        if cls is None:
            raise InvalidFault(f"unknown fault kind {kind!r}; known: {', '.join(sorted(FaultSpec.registry))}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidFault(f"{kind}: unknown parameter(s) {unknown}; it takes {sorted(known - {'target'})}")
        return cls(**values)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.parameters().items())
        return f"{self.kind}({self.target!r}, {shown}, duration={self.duration_s})"


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value
