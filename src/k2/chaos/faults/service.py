"""service_failure: the seed's first mechanism — stop, pause or kill a service for a while."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from k2.chaos.effects import Effect
from k2.chaos.errors import InvalidFault
from k2.chaos.faults.spec import FaultSpec
from k2.chaos.targets.capabilities import Capability, Freeze, Lifecycle, Probe

MODES = ("stop", "pause", "kill")


@dataclass(frozen=True, kw_only=True, repr=False)
class ServiceFailure(FaultSpec[Lifecycle | Freeze]):
    """stop = graceful stop then start with the same command and data; pause = freeze the whole process
    tree (the freezer cgroup, what `docker pause` uses); kill = SIGKILL then start."""

    kind = "service_failure"
    mode: str = "stop"

    def check(self) -> None:
        if self.mode not in MODES:
            raise InvalidFault(f"service_failure: unknown mode {self.mode!r}; use one of {', '.join(MODES)}")

    @property
    def capability(self) -> Capability:
        return Capability.FREEZE if self.mode == "pause" else Capability.LIFECYCLE

    @property
    def primitive(self) -> str:
        return self.mode

    def arguments(self) -> dict[str, Any]:
        return {}

    def apply(self, target: Lifecycle | Freeze, probe: Probe | None) -> Effect:
        if self.mode == "pause":
            return cast(Freeze, target).pause(probe=probe)
        service = cast(Lifecycle, target)
        return service.stop() if self.mode == "stop" else service.kill()

    def undo(self, target: Lifecycle | Freeze, probe: Probe | None) -> Effect:
        """A stopped or killed service counts as restored once it answers again, on every backend (a
        container runs well before the service in it listens)."""
        if self.mode == "pause":
            return cast(Freeze, target).resume()
        return cast(Lifecycle, target).start(probe=probe)
