"""Network faults: the seed's network_partition and inject_latency, and the other stream toxics of the same
shape (bandwidth, reset, timeout, slow close, slicer, data limit). Through the fault proxy on the stack;
any backend with the network capability can serve them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from k2.chaos.effects import Effect
from k2.chaos.errors import InvalidFault
from k2.chaos.faults.spec import FaultSpec
from k2.chaos.proxy.toxic import create_toxic
from k2.chaos.targets.capabilities import Capability, Network, Probe

PARTITION_MODES = ("refuse", "blackhole")
DIRECTIONS = ("both", "upstream", "downstream")


def _clients(kind: str, clients: object) -> tuple[str, ...] | None:
    if clients is None:
        return None
    if isinstance(clients, str) or not isinstance(clients, list | tuple) or not clients:
        raise InvalidFault(f"{kind}: clients={clients!r} must be a non-empty list of client labels")
    if not all(isinstance(c, str) and c for c in clients):
        raise InvalidFault(f"{kind}: clients={clients!r} must be a non-empty list of client labels")
    return tuple(clients)


@dataclass(frozen=True, kw_only=True, repr=False)
class NetworkPartition(FaultSpec[Network]):
    """`refuse`: new connections refused, open ones cut. `blackhole`: connections stay open but nothing
    flows (held, delivered on heal, as TCP does). `direction` upstream = requests do not reach the
    service; downstream = its responses do not come back. `clients` names the client labels to cut off
    (the split-brain case); None cuts everyone."""

    kind = "network_partition"
    mode: str = "refuse"
    direction: str = "both"
    clients: tuple[str, ...] | None = None

    def check(self) -> None:
        if self.mode not in PARTITION_MODES:
            raise InvalidFault(
                f"network_partition: unknown mode {self.mode!r}; use one of {', '.join(PARTITION_MODES)}"
            )
        if self.direction not in DIRECTIONS:
            raise InvalidFault(
                f"network_partition: unknown direction {self.direction!r}; use one of {', '.join(DIRECTIONS)}"
            )
        if self.mode == "refuse" and self.direction != "both":
            raise InvalidFault(
                "network_partition: a one-way partition must use mode='blackhole' (refuse cuts both ways)"
            )
        self._set("clients", _clients(self.kind, self.clients))

    @property
    def capability(self) -> Capability:
        return Capability.NETWORK

    @property
    def primitive(self) -> str:
        return "isolate"

    def arguments(self) -> dict[str, Any]:
        clients = list(self.clients) if self.clients is not None else None
        return {"mode": self.mode, "direction": self.direction, "clients": clients}

    def apply(self, target: Network, probe: Probe | None) -> Effect:
        clients = list(self.clients) if self.clients is not None else None
        return target.isolate(self.mode, self.direction, clients, probe=probe)

    def undo(self, target: Network, probe: Probe | None) -> Effect:
        return target.rejoin()


@dataclass(frozen=True, kw_only=True, repr=False)
class ToxicFault(FaultSpec[Network]):
    """One toxic on one stream; `attributes` are the toxic's own (validated by building it, defaults filled)."""

    toxic: ClassVar[str]
    stream: str = "downstream"
    toxicity: float = 1.0
    clients: tuple[str, ...] | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def check(self) -> None:
        clients = _clients(self.kind, self.clients)
        built = create_toxic(self.toxic, stream=self.stream, toxicity=self.toxicity, clients=clients,
                             **dict(self.attributes))  # fmt: skip
        self._set("stream", built.stream.value)
        self._set("toxicity", built.toxicity)
        self._set("clients", clients)
        self._set("attributes", dict(built.attributes))

    @property
    def capability(self) -> Capability:
        return Capability.NETWORK

    @property
    def primitive(self) -> str:
        return "shape"

    def arguments(self) -> dict[str, Any]:
        return {
            "toxic": self.toxic,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
            "clients": list(self.clients) if self.clients else None,
        }

    def apply(self, target: Network, probe: Probe | None) -> Effect:
        clients = list(self.clients) if self.clients is not None else None
        return target.shape(self.toxic, self.stream, self.toxicity, self.attributes, clients, probe=probe)

    def undo(self, target: Network, probe: Probe | None) -> Effect:
        return target.unshape()


@dataclass(frozen=True, kw_only=True, repr=False)
class Latency(ToxicFault):
    kind, toxic = "latency", "latency"


@dataclass(frozen=True, kw_only=True, repr=False)
class Bandwidth(ToxicFault):
    kind, toxic = "bandwidth", "bandwidth"


@dataclass(frozen=True, kw_only=True, repr=False)
class ConnectionReset(ToxicFault):
    kind, toxic = "reset_peer", "reset_peer"


@dataclass(frozen=True, kw_only=True, repr=False)
class Timeout(ToxicFault):
    kind, toxic = "timeout", "timeout"


@dataclass(frozen=True, kw_only=True, repr=False)
class SlowClose(ToxicFault):
    kind, toxic = "slow_close", "slow_close"


@dataclass(frozen=True, kw_only=True, repr=False)
class Slicer(ToxicFault):
    kind, toxic = "slicer", "slicer"


@dataclass(frozen=True, kw_only=True, repr=False)
class DataLimit(ToxicFault):
    kind, toxic = "limit_data", "limit_data"
