"""A chaos session: the declared services and which target provides each capability, the journal and its
watchdog, the seed, and what happened.

Faults reach a service only through the session, so nothing outside the declared stack can be touched,
and every injection goes through the session's journal, so a fault never outlives the run.

    session = ChaosSession([ServiceTargets("kafka", process_target, proxy_target, probe=kafka_probe)], journal)
    with session:
        with session.inject(ServiceFailure(target="kafka", duration_s=5, mode="pause")) as fault:
            ...
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from k2.chaos.errors import ChaosError, InvalidFault, UnsafeTarget, Unsupported
from k2.chaos.faults import context
from k2.chaos.faults.injection import FaultRecord, Injection
from k2.chaos.faults.spec import FaultSpec
from k2.chaos.journal import Journal
from k2.chaos.seeds import new_seed, seed_for
from k2.chaos.targets.base import Target
from k2.chaos.targets.capabilities import PROTOCOLS, ROUTES, Capability, Probe
from k2.chaos.watchdog import Watchdog

__all__ = ["ChaosSession", "FaultRecord", "ServiceTargets"]

log = logging.getLogger(__name__)


class ServiceTargets:
    """One service of the declared stack: the targets that act on it and its health probe.

    Each capability is provided by the first target given that has it, so the order says which backend
    serves what: `ServiceTargets("kafka", proxy, container)` sends network faults through the fault proxy
    and everything else to the container.
    """

    def __init__(self, name: str, *targets: Target, probe: Probe | None = None) -> None:
        self.name, self.targets, self.probe = name, targets, probe
        self.providers: dict[Capability, Target] = {}
        for target in targets:
            for capability in sorted(getattr(target, "capabilities", ())):
                if not isinstance(target, PROTOCOLS[capability]):
                    raise InvalidFault(
                        f"{name}: {target!r} claims the {capability} capability but lacks its primitives "
                        f"({PROTOCOLS[capability].__name__}): declare only what the backend implements"
                    )
                self.providers.setdefault(capability, target)

    def __repr__(self) -> str:
        return f"ServiceTargets({self.name!r}, {', '.join(f'{c}={t!r}' for c, t in self.providers.items())})"

    def provider(self, capability: Capability) -> Target:
        """The target providing `capability`, or `Unsupported` naming the route that would work."""
        target = self.providers.get(capability)
        if target is None:
            have = ", ".join(sorted(self.providers)) or "none"
            # A backend may say why it cannot (e.g. Chaos Mesh has no freeze); else the generic route.
            reasons = [getattr(t, "refusals", {}).get(capability) for t in self.targets]
            why = next((r for r in reasons if r), "")
            raise Unsupported(
                f"{self.name}: no declared target has the {capability} capability (its targets have: {have}); "
                f"{why + '. ' if why else ''}{ROUTES[capability]}",
                capability=capability.value,
                service=self.name,
                route=ROUTES[capability],
            )
        return target

    def declares(self, target: Target) -> bool:
        """`target` is one of this service's declared targets (the same object, or the same kind and name)."""
        return any(t is target or (t.kind == target.kind and t.name == target.name) for t in self.targets)


class ChaosSession:
    """Open with `with`: takes the journal (refusing to start while an earlier run left faults pending,
    unless recover=True), starts the watchdog, and on exit restores whatever is still active."""

    def __init__(
        self,
        services: Iterable[ServiceTargets] | Mapping[str, ServiceTargets],
        journal_path: str | Path,
        *,
        seed: int | None = None,
        recover: bool = False,
        watchdog: bool = True,
    ) -> None:
        declared = services.values() if isinstance(services, Mapping) else services
        self.services: dict[str, ServiceTargets] = {}
        for service in declared:
            if service.name in self.services:
                raise InvalidFault(f"service {service.name!r} is declared twice; declare each service once")
            self.services[service.name] = service
        self.journal_path = Path(journal_path)
        # The run's seed; a component that needs randomness derives its own stream (k2.chaos.seeds.rng_for).
        self.seed = seed if seed is not None else new_seed()
        # The fault proxy's seed: its toxicity rolls and jitter replay with the run's seed.
        self.fault_proxy_seed: int | None = seed_for(self.seed, "fault-proxy")
        self.records: list[FaultRecord] = []
        self._recover = recover
        self._use_watchdog = watchdog
        self._active: list[Injection] = []
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
                kinds = {t.kind for s in self.services.values() for t in s.targets}
                self.watchdog = Watchdog.start(self.journal_path, preload=tuple(sorted(kinds)))
            self._seed_network()
        except BaseException:
            self.journal.close()
            raise
        context.opened(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.halt()
        finally:
            context.closed(self)
            if self.watchdog is not None:
                self.watchdog.stop()
            if self.journal is not None:
                self.journal.close()

    def _seed_network(self) -> None:
        """Hand each fault proxy the session's derived seed, so its toxicity rolls and jitter replay."""
        seeded: set[object] = set()
        for service in self.services.values():
            target = service.providers.get(Capability.NETWORK)
            set_seed, api = getattr(target, "set_seed", None), getattr(target, "api_url", id(target))
            if target is None or set_seed is None or api in seeded or self.fault_proxy_seed is None:
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
        for handle in active:
            try:
                handle.restore()
                restored.append(repr(handle))
            except Exception as exc:  # keep going: every other fault must still be restored
                log.error("halt: restoring %r failed: %s", handle, exc)
        return restored

    # -- injecting ---------------------------------------------------------------------------

    def service(self, name: str) -> ServiceTargets:
        """The declared service `name`; anything else is refused (K2 touches only what it started)."""
        service = self.services.get(name)
        if service is None:
            raise UnsafeTarget(
                f"{name} is not a service of the declared stack ({', '.join(self.services) or 'none'}); K2 only "
                "touches what it started, never production. Name one of those services."
            )
        return service

    def inject(self, spec: FaultSpec[Any], *, named: Target | None = None) -> Injection:
        """Apply `spec` now (journaled, verified, its timer running) and return its handle; use it with `with`.

        `named` is the target handle a caller gave instead of a service name: it must be one the session
        declared for that service. The same fault already active on the same target is refused.
        """
        service = self.service(spec.target)
        if named is not None and not service.declares(named):
            raise UnsafeTarget(
                f"{named!r} is not a target the session declared for {spec.target} "
                f"({', '.join(repr(t) for t in service.targets)}); K2 only touches what it started"
            )
        target = service.provider(spec.capability)
        handle = Injection(self, spec, target, service.probe)
        with self._lock:
            clash = next((h for h in self._active if h.target is target and h.spec.primitive == spec.primitive), None)
            if clash is not None:
                raise ChaosError(
                    f"{spec!r}: {spec.target} is already under {clash!r} (journal id {clash.journal_id}); "
                    "exit that fault's block (or restore it) before injecting it again"
                )
            self._active.append(handle)
        try:
            handle._apply()
        except BaseException:
            with self._lock:
                self._active.remove(handle)
                self.records.append(handle.record)
            raise
        with self._lock:
            self.records.append(handle.record)
        return handle

    def require_journal(self) -> Journal:
        if self.journal is None:
            raise ChaosError("the chaos session is not open: use it as `with session:` before injecting faults")
        return self.journal

    def ended(self, handle: Injection) -> None:
        with self._lock:
            if handle in self._active:
                self._active.remove(handle)

    @property
    def active(self) -> list[Injection]:
        with self._lock:
            return list(self._active)
