"""The catalogue of fault kinds as data: each kind's parameters (types, defaults, valid ranges, a range worth
exploring), the capability it needs, and which backend supports it. `k2 chaos list` prints it, `k2 chaos
inject` builds specs from it, and an explorer draws specs from it (`Kind.draw`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from k2.chaos.errors import InvalidFault
from k2.chaos.faults.clock import OFFSET_RANGE_S, ClockSkew
from k2.chaos.faults.disk import DiskFill
from k2.chaos.faults.network import NetworkPartition, ToxicFault
from k2.chaos.faults.resources import ResourceLimit
from k2.chaos.faults.service import MODES, ServiceFailure
from k2.chaos.faults.spec import FaultSpec
from k2.chaos.proxy.toxic import toxic_class
from k2.chaos.targets import BUILTIN, Capability, builtin_class
from k2.chaos.targets.capabilities import CPU_PERIOD_US, ROUTES
from k2.chaos.units import format_size

__all__ = ["BACKENDS", "CATALOGUE", "Kind", "Param", "Support", "kind", "support"]

# The backends a kind may run on, in the order `k2 chaos list` shows them.
BACKENDS = tuple(BUILTIN)


@dataclass(frozen=True)
class Param:
    """One parameter: `kind` is "int", "float", "str", "size" (bytes, "512m" accepted) or "labels" (a list).
    `minimum`/`maximum`/`choices` bound what is valid; `explore` is the range an explorer draws from."""

    name: str
    kind: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False  # None is a valid value (e.g. no memory limit)
    explore: tuple[float, float] | None = None

    def parse(self, text: str) -> Any:
        """A value from the command line (`--param name=text`)."""
        if self.optional and text.lower() in ("none", "null", ""):
            return None
        try:
            if self.kind == "int":
                return int(text)
            if self.kind == "float":
                return float(text)
        except ValueError:
            raise InvalidFault(f"parameter {self.name}={text!r}: expected a {self.kind} ({self.help})") from None
        if self.kind == "labels":
            return [part.strip() for part in text.split(",") if part.strip()]
        if self.kind == "size":
            return int(text) if text.isdigit() else text
        return text

    def draw(self, rng: random.Random) -> Any:
        """A valid value chosen with `rng` (choices uniformly, numbers within `explore`, else the default)."""
        if self.choices:
            return rng.choice(self.choices)
        if self.explore is None:
            return self.default
        low, high = self.explore
        if self.kind == "float":
            return round(rng.uniform(low, high), 3)
        return rng.randint(int(low), int(high))

    def describe(self) -> str:
        """`name=default` with its bounds, as `k2 chaos list` shows it."""
        bounds = ""
        if self.choices:
            bounds = "|".join(self.choices)
        elif self.minimum is not None or self.maximum is not None:
            show: Callable[[float], str] = (lambda v: format_size(int(v))) if self.kind == "size" else "{:g}".format
            low = "" if self.minimum is None else show(self.minimum)
            high = "" if self.maximum is None else show(self.maximum)
            bounds = f"{low}..{high}"
        shown = f"{self.name}={self.default!r}" if self.default is not None else f"{self.name}=None"
        return f"{shown} [{bounds}]" if bounds else shown


@dataclass(frozen=True)
class Kind:
    """One fault kind: its spec class, parameters and the capability each variant needs."""

    name: str
    spec: type[FaultSpec[Any]]
    help: str
    params: tuple[Param, ...]
    duration_default: float | None
    # variant (e.g. a mode) -> the capability it needs; "" for a kind with one variant
    capabilities: Mapping[str, Capability]
    make: Callable[..., FaultSpec[Any]] | None = field(repr=False, default=None)  # None: the spec class

    def build(self, target: str, duration_s: float | None = None, **params: Any) -> FaultSpec[Any]:
        """A validated spec; unknown parameters are refused naming the ones the kind takes."""
        known = {p.name for p in self.params}
        unknown = sorted(set(params) - known)
        if unknown:
            raise InvalidFault(f"{self.name}: unknown parameter(s) {unknown}; it takes {sorted(known)}")
        build = self.make or self.spec
        return build(target=target, duration_s=duration_s, **params)

    def draw(self, rng: random.Random, target: str, duration_s: tuple[float, float] = (1.0, 30.0)) -> FaultSpec[Any]:
        """A valid spec with parameters drawn by `rng` (combinations a kind refuses are drawn again)."""
        for _ in range(100):
            values = {p.name: p.draw(rng) for p in self.params}
            try:
                return self.build(target, round(rng.uniform(*duration_s), 3), **values)
            except InvalidFault:
                continue
        raise InvalidFault(f"{self.name}: no valid parameters drawn in 100 tries; check the explore ranges")


def _toxic_kind(cls: type[ToxicFault], help: str) -> Kind:
    """A toxic's parameters come from the toxic's own attribute declarations."""
    params = [
        Param("stream", "str", "downstream", "which direction is shaped", choices=("downstream", "upstream")),
        Param("toxicity", "float", 1.0, "share of connections affected", 0.0, 1.0, explore=(0.1, 1.0)),
        Param("clients", "labels", None, "client labels affected (none: all)", optional=True),
    ]
    for attribute in toxic_class(cls.toxic).ATTRIBUTES:
        top = attribute.maximum if attribute.maximum is not None else max(4 * (attribute.default or 0), 1000)
        explore = None if attribute.kind is str else (attribute.minimum or 0, top)
        params.append(Param(attribute.name, attribute.kind.__name__, attribute.default, attribute.help,
                            attribute.minimum, attribute.maximum, attribute.choices, explore=explore))  # fmt: skip
    names = {a.name for a in toxic_class(cls.toxic).ATTRIBUTES}

    def make(target: str, duration_s: float | None, **values: Any) -> FaultSpec[Any]:
        attributes = {k: v for k, v in values.items() if k in names}
        rest = {k: v for k, v in values.items() if k not in names}
        if isinstance(rest.get("clients"), list):
            rest["clients"] = tuple(rest["clients"])
        return cls(target=target, duration_s=duration_s, attributes=attributes, **rest)

    return Kind(cls.kind, cls, help, tuple(params), None, {"": Capability.NETWORK}, make)


def _partition(target: str, duration_s: float | None, **values: Any) -> FaultSpec[Any]:
    if isinstance(values.get("clients"), list):
        values["clients"] = tuple(values["clients"])
    return NetworkPartition(target=target, duration_s=duration_s, **values)


_SIZE_EXPLORE = (64 << 20, 1 << 30)

_TOXICS = {
    "latency": "delay the service's traffic (latency +/- jitter, ms)",
    "bandwidth": "limit the service's throughput (KB/s)",
    "reset_peer": "reset connections (after a timeout, ms)",
    "timeout": "stop all data and close connections after a timeout (ms)",
    "slow_close": "delay the close of connections (ms)",
    "slicer": "slice the stream into small packets, optionally delayed",
    "limit_data": "close connections after a number of bytes",
}


def _toxic_kinds() -> list[Kind]:
    kinds = []
    for name, help in _TOXICS.items():
        spec = FaultSpec.registry[name]
        assert issubclass(spec, ToxicFault)
        kinds.append(_toxic_kind(spec, help))
    return kinds


CATALOGUE: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("service_failure", ServiceFailure, "stop, pause (freeze) or kill the service, then bring it back",
             (Param("mode", "str", "stop", "how the service fails", choices=MODES),), 5.0,
             {"stop": Capability.LIFECYCLE, "kill": Capability.LIFECYCLE, "pause": Capability.FREEZE}),
        Kind("resource_limit", ResourceLimit, "cap the service's CPU and/or memory; the previous limits come back",
             (Param("cpu_quota", "int", 50000, "µs of CPU per cpu_period (50000 = half a core)", 1000,
                    optional=True, explore=(2000, CPU_PERIOD_US)),
              Param("mem_limit", "size", "512m", "memory limit, e.g. 512m", 1 << 20, optional=True,
                    explore=_SIZE_EXPLORE),
              Param("cpu_period", "int", CPU_PERIOD_US, "the quota's period in µs", 1000, 1_000_000)),
             None, {"": Capability.LIMITS}),
        Kind("network_partition", NetworkPartition, "cut the service off (refuse or black-hole), one or both ways, "
             "for everyone or named clients",
             (Param("mode", "str", "refuse", "refuse connections, or hold traffic", choices=("refuse", "blackhole")),
              Param("direction", "str", "both", "which way traffic stops", choices=("both", "upstream", "downstream")),
              Param("clients", "labels", None, "client labels cut off (none: everyone)", optional=True)),
             10.0, {"": Capability.NETWORK}, _partition),
        Kind("disk_fill", DiskFill, "fill the service's data filesystem to a fullness, or by a size",
             (Param("fullness", "float", 1.0, "fraction of the filesystem used afterwards", 0.0, 1.0,
                    optional=True, explore=(0.8, 1.0)),
              Param("size", "size", None, "bytes to write instead, e.g. 100m", 1, optional=True)),
             None, {"": Capability.DISK}),
        Kind("clock_skew", ClockSkew, "move the service's wall clock by an offset, or to a time (it then runs on)",
             (Param("offset_seconds", "float", None, "seconds ahead (negative: behind)", OFFSET_RANGE_S[0],
                    OFFSET_RANGE_S[1], optional=True, explore=(-86400.0, 86400.0)),
              Param("jump_to", "str", None, "an ISO-8601 time with its zone instead", optional=True)),
             None, {"": Capability.CLOCK}),
        *_toxic_kinds(),
    )
}  # fmt: skip


def kind(name: str) -> Kind:
    """The catalogue's kind `name`, or `InvalidFault` naming the known ones."""
    found = CATALOGUE.get(name)
    if found is None:
        raise InvalidFault(f"unknown fault kind {name!r}; `k2 chaos list` shows them: {', '.join(CATALOGUE)}")
    return found


@dataclass(frozen=True)
class Support:
    """Whether `backend` can inject `kind`: per variant, yes or no, with a note (a limitation or the route)."""

    kind: str
    backend: str
    variants: Mapping[str, bool]
    note: str = ""
    installed: bool = True  # False: the backend's module (or what it needs) is not on this machine

    @property
    def any(self) -> bool:
        return any(self.variants.values())


def support(kind_name: str, backend: str) -> Support:
    """What the catalogue knows of `backend` (a target kind of `k2.chaos.targets.BUILTIN`) for `kind_name`."""
    entry = kind(kind_name)
    cls = builtin_class(backend)
    if cls is None:
        return Support(kind_name, backend, dict.fromkeys(entry.capabilities, False), "not installed here", False)
    have = cls.capabilities
    refused: Mapping[str, str] = getattr(cls, "unsupported", {})
    notes: Mapping[str, str] = getattr(cls, "limitations", {})
    if kind_name in refused:
        return Support(kind_name, backend, dict.fromkeys(entry.capabilities, False), refused[kind_name])
    variants = {variant: capability in have for variant, capability in entry.capabilities.items()}
    if not any(variants.values()):
        missing = sorted({c for c in entry.capabilities.values() if c not in have})
        return Support(kind_name, backend, variants, ROUTES[missing[0]])
    return Support(kind_name, backend, variants, notes.get(kind_name, ""))
