"""Network faults through the fault proxy: the seed's network_partition and inject_latency, and the
other stream toxics of the same shape (bandwidth, reset, timeout, slow close, slicer, data limit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from k2.chaos.errors import InvalidFault
from k2.chaos.faults.base import Fault
from k2.chaos.proxy.toxic import create_toxic
from k2.chaos.session import ChaosSession
from k2.chaos.targets import Target

PARTITION_MODES = ("refuse", "blackhole")
DIRECTIONS = ("both", "upstream", "downstream")


class NetworkFault(Fault):
    """A fault whose target is the service's fault proxy, not its process."""

    facet = "network"

    def options(self, session: ChaosSession, target: Target) -> dict[str, Any]:
        probe = session.probe_for(target)
        return {"probe": probe} if probe else {}


class NetworkPartition(NetworkFault):
    """`refuse`: new connections refused, open ones cut. `blackhole`: connections stay open but
    nothing flows (held, delivered on heal, as TCP does). `direction` upstream = requests do not
    reach the service; downstream = its responses do not come back. `clients` names the client
    labels to cut off (the split-brain case); None cuts everyone."""

    kind = "network_partition"

    def __init__(
        self,
        target: Target | str,
        duration_seconds: float | None = 10,
        mode: str = "refuse",
        direction: str = "both",
        clients: Sequence[str] | None = None,
        *,
        session: ChaosSession | None = None,
    ) -> None:
        if mode not in PARTITION_MODES:
            raise InvalidFault(f"network_partition: unknown mode {mode!r}; use one of {', '.join(PARTITION_MODES)}")
        if direction not in DIRECTIONS:
            raise InvalidFault(
                f"network_partition: unknown direction {direction!r}; use one of {', '.join(DIRECTIONS)}"
            )
        if mode == "refuse" and direction != "both":
            raise InvalidFault(
                "network_partition: a one-way partition must use mode='blackhole' (refuse cuts both ways)"
            )
        if clients is not None and (
            isinstance(clients, str) or not clients or not all(isinstance(c, str) for c in clients)
        ):
            raise InvalidFault(f"network_partition: clients={clients!r} must be a non-empty list of client labels")
        self.mode, self.direction = mode, direction
        self.clients = list(clients) if clients is not None else None
        super().__init__(target, duration_seconds, session=session)

    @property
    def primitive(self) -> str:
        return "isolate"

    def params(self) -> dict[str, Any]:
        return {"mode": self.mode, "direction": self.direction, "clients": self.clients}


class ToxicFault(NetworkFault):
    """One toxic on one stream. Parameters are validated by building the toxic locally first."""

    toxic: str

    def __init__(
        self,
        target: Target | str,
        duration_seconds: float | None = None,
        *,
        stream: str = "downstream",
        toxicity: float = 1.0,
        clients: Sequence[str] | None = None,
        session: ChaosSession | None = None,
        **attributes: Any,
    ) -> None:
        built = create_toxic(self.toxic, stream=stream, toxicity=toxicity, clients=clients, **attributes)
        self.stream, self.toxicity = built.stream.value, built.toxicity
        self.attributes = dict(built.attributes)
        self.clients = list(clients) if clients is not None else None
        super().__init__(target, duration_seconds, session=session)

    @property
    def primitive(self) -> str:
        return "shape"

    def params(self) -> dict[str, Any]:
        return {"toxic": self.toxic, "stream": self.stream, "toxicity": self.toxicity,
                "attributes": self.attributes, "clients": self.clients}  # fmt: skip


class Latency(ToxicFault):
    kind, toxic = "latency", "latency"


class Bandwidth(ToxicFault):
    kind, toxic = "bandwidth", "bandwidth"


class ConnectionReset(ToxicFault):
    kind, toxic = "reset_peer", "reset_peer"


class Timeout(ToxicFault):
    kind, toxic = "timeout", "timeout"


class SlowClose(ToxicFault):
    kind, toxic = "slow_close", "slow_close"


class Slicer(ToxicFault):
    kind, toxic = "slicer", "slicer"


class DataLimit(ToxicFault):
    kind, toxic = "limit_data", "limit_data"
