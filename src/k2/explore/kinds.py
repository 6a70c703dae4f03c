"""The fault kinds an exploration draws from, as the public fault API spells them.

Each kind names the function of `k2.chaos.faults` that builds it (the seed's call shape, which the shrinker's
regression file writes out), the side of a service it acts on (its process, its fault-proxy route, its disk),
and how to draw parameters within ranges worth exploring. This is the only module that maps a kind to the
fault API, so following the fault catalogue as it grows touches nothing else.

    faults = kind("latency").build("kafka", 2.5, {"latency_ms": 400, "jitter_ms": 50, "stream": "downstream"})
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from k2.chaos.errors import InvalidFault

__all__ = ["FACETS", "KINDS", "WRITER_KINDS", "Inventory", "Kind", "kind"]

FACETS = ("process", "network", "disk", "clock")
STREAMS = ("downstream", "upstream")

Draw = Callable[[random.Random, str, "Inventory"], dict[str, Any]]


@dataclass(frozen=True)
class Inventory:
    """What a run may fault, per facet: services whose process can be stopped or limited (the platform's
    writer processes among them), services reached through the fault proxy, filesystems that can be filled,
    and the client labels a partial partition can cut off alone, per network service."""

    process: tuple[str, ...] = ()
    network: tuple[str, ...] = ()
    disk: tuple[str, ...] = ()
    clock: tuple[str, ...] = ()  # services whose wall clock a fault can move (libfaketime)
    client_labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def services(self, facet: str) -> tuple[str, ...]:
        return {"process": self.process, "network": self.network, "disk": self.disk, "clock": self.clock}[facet]

    def narrowed(self, services: Sequence[str] | None) -> Inventory:
        """Only `services` (None: all); a name in none of the facets is refused, naming those there are."""
        if services is None:
            return self
        known = set(self.process) | set(self.network) | set(self.disk) | set(self.clock)
        unknown = sorted(set(services) - known)
        if unknown:
            raise InvalidFault(
                f"--services: {', '.join(unknown)} not in this stack; choose from {', '.join(sorted(known))}"
            )
        keep = set(services)
        return Inventory(
            tuple(s for s in self.process if s in keep), tuple(s for s in self.network if s in keep),
            tuple(s for s in self.disk if s in keep),
            tuple(s for s in self.clock if s in keep),
            {s: labels for s, labels in self.client_labels.items() if s in keep},
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"process": list(self.process), "network": list(self.network), "disk": list(self.disk),
                "client_labels": {k: list(v) for k, v in self.client_labels.items()}}  # fmt: skip


@dataclass(frozen=True)
class Kind:
    """One kind: `function` in k2.chaos.faults, called as `function(target, duration_seconds=..., **params)`."""

    name: str
    function: str
    facet: str
    family: str  # lifecycle | partition | network | resources | clock: the nemesis picks a family first
    help: str
    draw: Draw = field(repr=False)
    on_writers: bool = False  # may act on the platform's writer processes (they are plain processes)

    def build(self, target: str, duration_s: float, params: Mapping[str, Any], *, session: Any = None) -> Any:
        """The fault, validated by the fault API (InvalidFault names the bad parameter); nothing is touched."""
        import k2.chaos.faults as api

        make = getattr(api, self.function)
        options = {"session": session} if session is not None else {}
        try:
            return make(target, duration_seconds=duration_s, **dict(params), **options)
        except TypeError as exc:  # a parameter the function does not take
            raise InvalidFault(f"{self.name}: {exc}; `k2 chaos explore --list` shows each kind's parameters") from None

    def targets(self, inventory: Inventory, writers: Sequence[str] = ()) -> tuple[str, ...]:
        """The services of `inventory` this kind can act on (writer processes only for kinds that may)."""
        found = inventory.services(self.facet)
        if not self.on_writers:
            found = tuple(s for s in found if s not in writers)
        return found


def _log_uniform(rng: random.Random, low: float, high: float) -> int:
    return round(math.exp(rng.uniform(math.log(low), math.log(high))))


def _stream(rng: random.Random) -> str:
    return rng.choice(STREAMS)


def _service_failure(rng: random.Random, target: str, inv: Inventory) -> dict[str, Any]:
    return {"mode": rng.choice(("stop", "pause", "kill"))}


def _partition(rng: random.Random, target: str, inv: Inventory) -> dict[str, Any]:
    mode = rng.choice(("refuse", "blackhole"))
    direction = "both" if mode == "refuse" else rng.choice(("both", "upstream", "downstream"))
    labels = inv.client_labels.get(target, ())
    clients = [rng.choice(labels)] if labels and rng.random() < 1 / 3 else None
    return {"mode": mode, "direction": direction, "clients": clients}


def _latency(rng: random.Random, target: str, inv: Inventory) -> dict[str, Any]:
    latency = _log_uniform(rng, 20, 3000)
    return {"latency_ms": latency, "jitter_ms": rng.randint(0, latency // 2), "stream": _stream(rng)}


def _bandwidth(rng: random.Random, target: str, inv: Inventory) -> dict[str, Any]:
    return {"rate_kbps": _log_uniform(rng, 4, 2048), "stream": _stream(rng)}


def _reset(rng: random.Random, target: str, inv: Inventory) -> dict[str, Any]:
    return {"timeout_ms": rng.randint(0, 2000), "stream": _stream(rng)}


def _timeout(rng: random.Random, target: str, inv: Inventory) -> dict[str, Any]:
    return {"timeout_ms": rng.choice((0, rng.randint(500, 5000))), "stream": _stream(rng)}


def _slow_close(rng: random.Random, target: str, inv: Inventory) -> dict[str, Any]:
    return {"delay_ms": rng.randint(100, 3000), "stream": _stream(rng)}


def _slicer(rng: random.Random, target: str, inv: Inventory) -> dict[str, Any]:
    size = rng.randint(1, 512)
    return {"average_size": size, "size_variation": rng.randint(0, size - 1), "delay_us": rng.randint(0, 2000),
            "stream": _stream(rng)}  # fmt: skip


def _limit_data(rng: random.Random, target: str, inv: Inventory) -> dict[str, Any]:
    return {"max_bytes": _log_uniform(rng, 1024, 1 << 20), "stream": _stream(rng)}


def _resource_limit(rng: random.Random, target: str, inv: Inventory) -> dict[str, Any]:
    # Memory limits low enough to OOM-kill a service are part of the catalogue; drawn one time in three.
    mem = rng.choice((None, None, None, None, "256m", "512m"))
    return {"cpu_quota": rng.randint(5, 50) * 1000, "mem_limit": mem}


def _clock_skew(rng: random.Random, target: str, inv: Inventory) -> dict[str, Any]:
    return {"offset_seconds": rng.choice((-1, 1)) * _log_uniform(rng, 1, 3600)}


def _disk_fill(rng: random.Random, target: str, inv: Inventory) -> dict[str, Any]:
    return {"fullness": round(rng.uniform(0.9, 1.0), 3)}


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("service_failure", "service_failure", "process", "lifecycle",
             "stop, pause (freeze) or SIGKILL a service, then bring it back", _service_failure, on_writers=True),
        Kind("network_partition", "network_partition", "network", "partition",
             "refuse or black-hole a service's traffic, both ways or one way, for all or one client", _partition),
        Kind("latency", "inject_latency", "network", "network", "delay traffic (latency +/- jitter)", _latency),
        Kind("bandwidth", "limit_bandwidth", "network", "network", "limit throughput", _bandwidth),
        Kind("reset_peer", "reset_connections", "network", "network", "reset connections after a timeout", _reset),
        Kind("timeout", "timeout_connections", "network", "network", "hold all data, close after a timeout",
             _timeout),
        Kind("slow_close", "slow_close", "network", "network", "delay the close of connections", _slow_close),
        Kind("slicer", "slice_stream", "network", "network", "cut the stream into small, delayed pieces", _slicer),
        Kind("limit_data", "limit_data", "network", "network", "close connections after some bytes", _limit_data),
        Kind("resource_limit", "resource_limit", "process", "resources",
             "cap a service's CPU (and sometimes memory)", _resource_limit, on_writers=True),
        Kind("disk_fill", "disk_fill", "disk", "resources", "fill the filesystem a service keeps its data on",
             _disk_fill),
        Kind("clock_skew", "clock_skew", "clock", "clock", "step a service's wall clock by up to an hour either way",
             _clock_skew),
    )
}  # fmt: skip

# What can be done to the platform's own writer processes.
WRITER_KINDS = tuple(k.name for k in KINDS.values() if k.on_writers)


def kind(name: str) -> Kind:
    """The kind `name`, or InvalidFault listing the known ones."""
    found = KINDS.get(name)
    if found is None:
        raise InvalidFault(f"unknown fault kind {name!r}; explore draws from: {', '.join(KINDS)}")
    return found
