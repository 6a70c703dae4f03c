"""service_failure: the seed's first mechanism — stop, pause or kill a service for a while."""

from __future__ import annotations

from typing import Any

from k2.chaos.errors import InvalidFault
from k2.chaos.faults.base import Fault
from k2.chaos.session import ChaosSession
from k2.chaos.targets import Target

MODES = {"stop": "stop", "pause": "pause", "kill": "kill"}


class ServiceFailure(Fault):
    """stop = graceful stop then start with the same command and data; pause = freeze the whole
    process tree (the freezer cgroup, what `docker pause` uses); kill = SIGKILL then start."""

    kind = "service_failure"

    def __init__(
        self,
        target: Target | str,
        duration_seconds: float | None = 5,
        mode: str = "stop",
        *,
        session: ChaosSession | None = None,
    ) -> None:
        if mode not in MODES:
            raise InvalidFault(f"service_failure: unknown mode {mode!r}; use one of {', '.join(MODES)}")
        self.mode = mode
        super().__init__(target, duration_seconds, session=session)

    @property
    def primitive(self) -> str:
        return MODES[self.mode]

    def params(self) -> dict[str, Any]:
        return {}

    def options(self, session: ChaosSession, target: Target) -> dict[str, Any]:
        probe = session.probe_for(target)
        return {"probe": probe} if self.mode == "pause" and probe else {}

    def restore_options(self, session: ChaosSession, target: Target) -> dict[str, Any]:
        """A stopped or killed service counts as restored once it answers again, on every backend (a
        container runs well before the service in it listens)."""
        probe = session.probe_for(target)
        return {"probe": probe} if self.mode != "pause" and probe else {}

    def __repr__(self) -> str:
        return f"service_failure({self._target_name()!r}, mode={self.mode!r}, duration={self.duration})"
