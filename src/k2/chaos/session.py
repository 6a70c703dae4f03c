"""A chaos session: the declared targets, the journal and its watchdog, the seed, and what happened.

Faults resolve their target through the session, so nothing outside the declared stack can be
touched, and every injection goes through the session's journal, so a fault never outlives the run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from k2.chaos.errors import ChaosError, UnsafeTarget
from k2.chaos.journal import Journal
from k2.chaos.seeds import new_seed, seed_for
from k2.chaos.targets import Probe, Target
from k2.chaos.watchdog import Watchdog

if TYPE_CHECKING:
    from k2.chaos.faults.base import Fault

log = logging.getLogger(__name__)
_current: list[ChaosSession] = []


@dataclass
class FaultRecord:
    """One fault as it happened: for reports and for the checker's timeline."""

    kind: str
    target: str
    params: dict[str, Any]
    duration_s: float | None
    journal_id: str | None = None
    injected_at: float | None = None  # wall clock
    restored_at: float | None = None
    effect: dict[str, Any] = field(default_factory=dict)
    restore_effect: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    primitive: str | None = None  # the target primitive that injected it (e.g. pause, kill): its mode


class ChaosSession:
    """Open with `with`: takes the journal (refusing to start while an earlier run left faults
    pending, unless recover=True), starts the watchdog, and on exit restores whatever is still active."""

    def __init__(
        self,
        targets: Mapping[str, Target],
        journal_path: str | Path,
        *,
        probes: Mapping[str, Probe] | None = None,
        network: Mapping[str, Target] | None = None,
        disks: Mapping[str, Target] | None = None,
        clocks: Mapping[str, Target] | None = None,
        clock_probes: Mapping[str, Any] | None = None,
        seed: int | None = None,
        recover: bool = False,
        watchdog: bool = True,
    ) -> None:
        self.targets = dict(targets)
        # The same services as reached over the network (their fault proxies), for network faults.
        self.network = dict(network or {})
        # The filesystems the services keep their data on, for disk faults.
        self.disks = dict(disks or {})
        # The services' wall clocks (libfaketime domains), and how to read each service's own clock.
        self.clocks = dict(clocks or {})
        self.clock_probes = dict(clock_probes or {})
        self.probes = dict(probes or {})
        self.journal_path = Path(journal_path)
        # The run's seed; a component that needs randomness derives its own stream (k2.chaos.seeds.rng_for).
        self.seed = seed if seed is not None else new_seed()
        # The fault proxy's seed: its toxicity rolls and jitter replay with the run's seed.
        self.fault_proxy_seed: int | None = seed_for(self.seed, "fault-proxy")
        self.records: list[FaultRecord] = []
        self._recover = recover
        self._use_watchdog = watchdog
        self._active: list[Fault] = []
        self._lock = threading.RLock()
        self.journal: Journal | None = None
        self.watchdog: Watchdog | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> ChaosSession:
        self.journal = Journal(self.journal_path, recover=self._recover)
        try:
            if self._recover and self.journal.pending():
                for entry in self.journal.recover():
                    log.warning("recovered a fault left by an earlier run: %s", entry.summary())
            if self._use_watchdog:
                facets = (self.targets, self.network, self.disks, self.clocks)
                kinds = {t.kind for facet in facets for t in facet.values()}
                self.watchdog = Watchdog.start(self.journal_path, preload=tuple(sorted(kinds)))
            self._seed_network()
        except BaseException:
            self.journal.close()
            raise
        _current.append(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.halt()
        finally:
            if self in _current:
                _current.remove(self)
            if self.watchdog is not None:
                self.watchdog.stop()
            if self.journal is not None:
                self.journal.close()

    def _seed_network(self) -> None:
        """Hand each fault proxy the session's derived seed, so its toxicity rolls and jitter replay."""
        seeded: set[object] = set()
        for target in self.network.values():
            set_seed, api = getattr(target, "set_seed", None), getattr(target, "api_url", id(target))
            if set_seed is None or api in seeded:
                continue
            seeded.add(api)
            try:
                set_seed(self.fault_proxy_seed)
            except ChaosError as exc:
                log.warning("fault proxy at %s did not take seed %s (%s): its toxics will not replay", api,
                            self.fault_proxy_seed, exc)  # fmt: skip
                self.fault_proxy_seed = None

    def halt(self) -> list[str]:
        """Restore every active fault now (newest first); returns what was restored."""
        with self._lock:
            active = list(reversed(self._active))
        restored = []
        for fault in active:
            try:
                fault.restore()
                restored.append(repr(fault))
            except Exception as exc:  # keep going: every other fault must still be restored
                log.error("halt: restoring %r failed: %s", fault, exc)
        return restored

    # -- what faults use ---------------------------------------------------------------------

    def resolve(self, target: Target | str, *, facet: str = "process") -> Target:
        """The declared target for a name or handle — its process, its `network` side (fault proxy) or its
        `disk` — and anything else is refused."""
        facets = {"process": self.targets, "network": self.network, "disk": self.disks, "clock": self.clocks}
        declared_targets = facets[facet]
        if isinstance(target, str):
            if target in declared_targets:
                return declared_targets[target]
        else:
            if facet != "process" and target.name in declared_targets:
                return declared_targets[target.name]
            for declared in declared_targets.values():
                if target is declared or (
                    getattr(target, "kind", None) == declared.kind and getattr(target, "name", None) == declared.name
                ):
                    return declared
        name = target if isinstance(target, str) else repr(target)
        raise UnsafeTarget(
            f"{name} is not a service of the declared stack ({', '.join(declared_targets) or 'none'}); K2 only "
            "touches what it started, never production. Name one of those services."
        )

    def probe_for(self, target: Target) -> Probe | None:
        return self.probes.get(target.name)

    def require_journal(self) -> Journal:
        if self.journal is None:
            raise ChaosError("the chaos session is not open: use it as `with session:` before injecting faults")
        return self.journal

    def started(self, fault: Fault) -> None:
        with self._lock:
            self._active.append(fault)
            self.records.append(fault.record)

    def ended(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._active:
                self._active.remove(fault)

    @property
    def active(self) -> list[Fault]:
        with self._lock:
            return list(self._active)


def current_session() -> ChaosSession:
    """The innermost open session; faults built without one use it."""
    if not _current:
        raise ChaosError(
            "no chaos session is open: open one with `with stack.chaos_session():` (or the pytest plugin's "
            "fixtures) so every fault is journaled and restored"
        )
    return _current[-1]


@contextmanager
def no_session() -> Iterator[None]:
    """For tests of session handling: temporarily hide open sessions."""
    saved = list(_current)
    _current.clear()
    try:
        yield
    finally:
        _current[:] = saved
