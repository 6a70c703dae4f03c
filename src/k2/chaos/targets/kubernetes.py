"""A service on Kubernetes as a chaos target: each fault is a Chaos Mesh object K2 creates and deletes.

Inject = translate (k2.chaos.kubernetes.translate) -> check the webhook's rules -> create -> wait,
with a deadline, until Chaos Mesh's `status.experiment` shows every selected pod or container
Injected (that read-back is the effect's proof; a failed apply's message becomes `InjectionFailed`).
Restore = delete, with the uid as precondition, every object of the primitive this run created for
this service, then wait until each is gone: Chaos Mesh's finalizer keeps an object until its records
are recovered, so "gone" means "recovered". K2 never removes that finalizer itself.

Crash safety: `describe()` names the run id, the placement and how to reach the cluster (a kubeconfig
path, never a credential), plus the objects created so far. An inverse rebuilt from the journal
deletes those and any other object labelled with this run, service and primitive (an object created
just before a crash, not yet journaled by name). Only objects carrying K2's labels for this run are
ever deleted. Every object also carries a Chaos Mesh `duration` (the fault's, else `max_hold_s`), so
the cluster ends it by itself even if the runner and its watchdog are both gone.

Tested against an in-process fake API server only, not against a live cluster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, TypeVar

from k2.chaos.effects import (
    Effect,
    Filled,
    Freed,
    Frozen,
    Healed,
    Limited,
    Partitioned,
    Shaped,
    Skewed,
    Started,
    Stopped,
    Thawed,
    Unlimited,
    Unskewed,
    measure,
)
from k2.chaos.errors import InjectionFailed, InvalidFault, RestoreFailed, UnsafeTarget
from k2.chaos.kubernetes.admission import check_admission
from k2.chaos.kubernetes.api import ChaosMeshApi, ChaosStatus, ClusterAccess
from k2.chaos.kubernetes.placement import Placement, check_run_id, new_run_id, ownership_labels
from k2.chaos.kubernetes.translate import PLURALS, ChaosRequest, translate
from k2.chaos.targets.base import CPU_PERIOD_US, Probe, wait_until
from k2.chaos.targets.capabilities import Capability

__all__ = ["KubernetesTarget", "ObjectRef"]

E = TypeVar("E", bound=Effect)
R = TypeVar("R", bound=Effect)

# Which objects each inverse deletes, and the kind each primitive creates (for the label sweep).
_UNDOES = {
    "start": ("stop", "kill"),
    "resume": ("pause",),
    "unlimit": ("limit",),
    "rejoin": ("isolate",),
    "unshape": ("shape",),
    "free_disk": ("fill_disk",),
    "unskew": ("skew_clock",),
}
_PLURAL_OF = {
    "stop": "podchaos",
    "kill": "podchaos",
    "isolate": "networkchaos",
    "shape": "networkchaos",
    "fill_disk": "iochaos",
    "skew_clock": "timechaos",
}


@dataclass(frozen=True)
class ObjectRef:
    """A Chaos Mesh object this target created."""

    kind: str
    namespace: str
    name: str
    uid: str
    primitive: str

    @property
    def plural(self) -> str:
        return PLURALS[self.kind]

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class KubernetesTarget:
    """One service's pods (a `Placement`) in one K2 run (`run_id`), reached through `cluster`."""

    kind = "kubernetes"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.LIFECYCLE, Capability.NETWORK, Capability.DISK, Capability.CLOCK}
    )
    # Why the capabilities Chaos Mesh lacks are missing (the session's Unsupported says it).
    refusals: ClassVar[dict[Capability, str]] = {
        Capability.FREEZE: "Chaos Mesh has no freeze (pod-failure is a stop)",
        Capability.LIMITS: "Chaos Mesh cannot cap a pod's CPU or memory (StressChaos consumes them)",
    }
    # What `k2 chaos list` says of this backend (see k2.chaos.faults.catalogue).
    unsupported: ClassVar[dict[str, str]] = dict.fromkeys(
        ("reset_peer", "timeout", "slow_close", "slicer", "limit_data"),
        "no Chaos Mesh mapping: the fault proxy as a sidecar",
    )
    limitations: ClassVar[dict[str, str]] = {
        "service_failure": "stop = PodChaos pod-failure, kill = container-kill; no pause (not tested on a cluster)",
        "network_partition": "NetworkChaos partition: blackhole only (refuse needs the fault proxy as a sidecar)",
        "latency": "NetworkChaos delay, toxicity 1.0 only",
        "bandwidth": "NetworkChaos bandwidth, toxicity 1.0 only",
        "disk_fill": "IOChaos errno 28 (ENOSPC) on the volume: writes fail, nothing is filled",
    }

    def __init__(
        self,
        placement: Placement,
        *,
        cluster: ClusterAccess | None = None,
        run_id: str | None = None,
        inject_timeout_s: float = 60.0,
        restore_timeout_s: float = 60.0,
        max_hold_s: float = 3600.0,
        objects: Iterable[ObjectRef] = (),
    ) -> None:
        for what, value in (
            ("inject_timeout_s", inject_timeout_s),
            ("restore_timeout_s", restore_timeout_s),
            ("max_hold_s", max_hold_s),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400:
                raise InvalidFault(f"{placement.service}: {what}={value!r} must be within (0, 86400] seconds")
        self.placement = placement
        self.name = placement.service
        self.cluster = cluster or ClusterAccess()
        self.run_id = check_run_id(run_id or new_run_id())
        self.inject_timeout_s, self.restore_timeout_s, self.max_hold_s = inject_timeout_s, restore_timeout_s, max_hold_s
        self._objects: list[ObjectRef] = list(objects)
        self._lock = threading.Lock()  # a fault's timer thread restores while another fault may inject
        self._api: ChaosMeshApi | None = None

    def __repr__(self) -> str:
        return f"KubernetesTarget({self.name!r}, namespace={self.placement.namespace!r}, run={self.run_id!r})"

    # -- journal -----------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "placement": self.placement.to_dict(),
            "cluster": self.cluster.to_dict(),
            "run_id": self.run_id,
            "timeouts": {
                "inject_s": self.inject_timeout_s,
                "restore_s": self.restore_timeout_s,
                "max_hold_s": self.max_hold_s,
            },
            "objects": [asdict(ref) for ref in self.objects],
        }

    @classmethod
    def from_description(cls, desc: Mapping[str, Any]) -> KubernetesTarget:
        try:
            placement = Placement.from_dict(desc["placement"])
            objects = [ObjectRef(**ref) for ref in desc.get("objects") or []]
            timeouts = desc.get("timeouts") or {}
            target = cls(
                placement,
                cluster=ClusterAccess.from_dict(desc.get("cluster") or {}),
                run_id=desc["run_id"],
                inject_timeout_s=timeouts.get("inject_s", 60.0),
                restore_timeout_s=timeouts.get("restore_s", 60.0),
                max_hold_s=timeouts.get("max_hold_s", 3600.0),
                objects=objects,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidFault(f"not a kubernetes target description ({exc}): {dict(desc)!r}") from exc
        for ref in objects:
            if ref.kind not in PLURALS or ref.namespace != placement.namespace:
                raise UnsafeTarget(f"journaled object {ref} is outside {placement.service}'s namespace or kinds")
        return target

    @property
    def objects(self) -> list[ObjectRef]:
        with self._lock:
            return list(self._objects)

    def api(self) -> ChaosMeshApi:
        with self._lock:
            if self._api is None:
                self._api = self.cluster.connect()
            return self._api

    # -- primitives --------------------------------------------------------------------------

    def stop(self, timeout: float | None = None, *, duration_s: float | None = None) -> Stopped:
        """pod-failure on every selected pod (Chaos Mesh swaps the containers' images for a pause image)."""
        return self._apply(Stopped, "stop", {}, duration_s)

    def kill(self, timeout: float | None = None, *, duration_s: float | None = None) -> Stopped:
        """container-kill of the placement's container; the kubelet restarts it by the pod's restart policy."""
        return self._apply(Stopped, "kill", {}, duration_s)

    def start(self, timeout: float | None = None, probe: Probe | None = None) -> Started:
        return self._remove(Started, "start", timeout, probe)

    def pause(self, timeout: float = 10.0, probe: Probe | None = None) -> Frozen:
        return self._apply(Frozen, "pause", {}, None)  # raises Unsupported, saying why

    def resume(self, timeout: float = 10.0, probe: Probe | None = None) -> Thawed:
        return self._remove(Thawed, "resume", timeout, None)

    def limit(
        self, cpu_quota: int | None = None, mem_limit: str | int | None = None, *, cpu_period: int = CPU_PERIOD_US
    ) -> Limited:
        return self._apply(Limited, "limit", {"cpu_quota": cpu_quota, "mem_limit": mem_limit}, None)  # Unsupported

    def unlimit(self, timeout: float = 10.0) -> Unlimited:
        return self._remove(Unlimited, "unlimit", timeout, None)

    def isolate(
        self,
        mode: str = "blackhole",
        direction: str = "both",
        clients: list[str] | None = None,
        *,
        probe: Probe | None = None,
        duration_s: float | None = None,
    ) -> Partitioned:
        return self._apply(
            Partitioned, "isolate", {"mode": mode, "direction": direction, "clients": clients}, duration_s
        )

    def rejoin(self, probe: Probe | None = None, timeout: float | None = None) -> Healed:
        return self._remove(Healed, "rejoin", timeout, probe)

    def shape(
        self,
        toxic: str,
        stream: str = "downstream",
        toxicity: float = 1.0,
        attributes: Mapping[str, Any] | None = None,
        clients: list[str] | None = None,
        *,
        probe: Probe | None = None,
        duration_s: float | None = None,
    ) -> Shaped:
        params = {
            "toxic": toxic,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": dict(attributes or {}),
            "clients": clients,
        }
        return self._apply(Shaped, "shape", params, duration_s)

    def unshape(self, probe: Probe | None = None, timeout: float | None = None) -> Healed:
        return self._remove(Healed, "unshape", timeout, probe)

    def fill_disk(
        self, size: str | int | None = None, fullness: float | None = 1.0, *, duration_s: float | None = None
    ) -> Filled:
        return self._apply(Filled, "fill_disk", {"size": size, "fullness": fullness}, duration_s)

    def free_disk(self, timeout: float | None = None) -> Freed:
        return self._remove(Freed, "free_disk", timeout, None)

    def skew_clock(
        self, offset_seconds: float | None = None, jump_to: float | None = None, *, duration_s: float | None = None
    ) -> Skewed:
        params = {"offset_seconds": offset_seconds, "jump_to": jump_to}
        return self._apply(Skewed, "skew_clock", params, duration_s)

    def unskew(self, timeout: float | None = None) -> Unskewed:
        return self._remove(Unskewed, "unskew", timeout, None)

    # -- the two halves ----------------------------------------------------------------------

    def _apply(self, cls: type[E], primitive: str, params: dict[str, Any], duration_s: float | None) -> E:
        started_at, t0 = time.time(), time.monotonic()
        request = ChaosRequest(primitive, params, self.name, duration_s if duration_s is not None else self.max_hold_s)
        chaos = translate(request, self.placement, self.run_id)
        manifest = chaos.manifest()
        check_admission(manifest)
        api = self.api()
        created = api.create(manifest, chaos.plural)
        ref = ObjectRef(chaos.kind, chaos.namespace, chaos.name, str(created["metadata"]["uid"]), primitive)
        with self._lock:
            self._objects.append(ref)
        status = self._await_injected(api, ref)
        if not status.injected:
            detail = status.summary()
            try:
                self._delete(api, [ref], self.restore_timeout_s)
            except Exception as undo:  # the journal keeps the fault pending for recovery
                detail["undo_failed"] = str(undo)
            raise InjectionFailed(
                f"{self.name}: {ref} was not injected within {self.inject_timeout_s:g}s: {detail}. Check that the "
                f"selector {dict(self.placement.selector)} matches running pods in namespace "
                f"{self.placement.namespace} and that chaos-controller-manager and chaos-daemon are running"
            )
        measured = {
            "object": str(ref),
            "uid": ref.uid,
            "verified_by": "Chaos Mesh status.experiment",
            **status.summary(),
        }
        return measure(
            cls, primitive, self.name, self.kind, t0, started_at, detail=measured, **_fields(primitive, params)
        )

    def _await_injected(self, api: ChaosMeshApi, ref: ObjectRef) -> ChaosStatus:
        last = ChaosStatus(None)

        def injected() -> bool:
            nonlocal last
            obj = api.get(ref.plural, ref.namespace, ref.name)
            if obj is None:
                raise InjectionFailed(f"{self.name}: {ref} disappeared while K2 waited for its injection")
            last = ChaosStatus.of(obj)
            return last.injected

        wait_until(injected, self.inject_timeout_s, first=0.05, cap=1.0)
        return last

    def _remove(self, cls: type[R], inverse: str, timeout: float | None, probe: Probe | None) -> R:
        started_at, t0 = time.time(), time.monotonic()
        primitives = _UNDOES[inverse]
        if not any(p in _PLURAL_OF for p in primitives):  # pause, limit: never applied here
            return measure(cls, inverse, self.name, self.kind, t0, started_at, changed=False, detail={"deleted": []})
        api = self.api()
        known = {ref.uid for ref in self.objects if ref.primitive in primitives}
        refs = self._owned(api, primitives)
        deadline = timeout if timeout is not None else self.restore_timeout_s
        deleted = self._delete(api, refs, deadline)
        with self._lock:  # journaled ones found already gone are done with too
            self._objects = [ref for ref in self._objects if ref.uid not in known]
        measured: dict[str, Any] = {
            "deleted": [str(ref) for ref in deleted],
            "gone": [str(ref) for ref in refs],
            "verified_by": "deleted objects gone (Chaos Mesh recovered their records)",
        }
        answered = None
        if probe is not None and refs:
            answered = wait_until(lambda: probe(1.0), deadline, first=0.05, cap=0.5)
            if not answered:
                raise RestoreFailed(
                    f"{self.name}: the chaos objects are gone but the service did not answer "
                    f"its probe within {deadline:g}s"
                )
        fields: dict[str, Any] = {"answered": answered} if cls in (Started, Healed) else {}
        return measure(
            cls, inverse, self.name, self.kind, t0, started_at, changed=bool(refs), detail=measured, **fields
        )

    def _delete(self, api: ChaosMeshApi, refs: list[ObjectRef], deadline: float) -> list[ObjectRef]:
        """Delete `refs` (uid preconditions) and wait until each is gone; returns those this call deleted."""
        deleted = [ref for ref in refs if api.delete(ref.plural, ref.namespace, ref.name, ref.uid)]
        remaining = list(refs)

        def all_gone() -> bool:
            remaining[:] = [ref for ref in remaining if _still_there(api, ref)]
            return not remaining

        if not wait_until(all_gone, deadline, first=0.05, cap=1.0):
            states = {str(ref): _state(api, ref) for ref in remaining}
            raise RestoreFailed(
                f"{self.name}: {len(remaining)} Chaos Mesh object(s) still present {deadline:g}s after deletion: "
                f"{states}. Chaos Mesh removes an object only after recovering every record; check "
                "chaos-controller-manager. K2 does not strip the finalizer (that would leave the fault applied); "
                "run `k2 chaos recover` again once the controller works"
            )
        gone = {ref.uid for ref in refs}
        with self._lock:
            self._objects = [ref for ref in self._objects if ref.uid not in gone]
        return deleted

    def _owned(self, api: ChaosMeshApi, primitives: tuple[str, ...]) -> list[ObjectRef]:
        """The objects to delete: the journaled ones plus any labelled as this run's, service's and primitive's,
        each re-read and checked to carry this run's labels (anything else is refused, never deleted)."""
        found: dict[str, ObjectRef] = {ref.uid: ref for ref in self.objects if ref.primitive in primitives}
        for primitive in primitives:
            labels = ownership_labels(self.run_id, self.name, primitive)
            plural = _PLURAL_OF[primitive]
            kind = next(k for k, p in PLURALS.items() if p == plural)
            for obj in api.list(plural, self.placement.namespace, labels):
                meta = obj.get("metadata") or {}
                if _owned_by(meta, labels):
                    ref = ObjectRef(
                        kind, self.placement.namespace, str(meta.get("name")), str(meta.get("uid")), primitive
                    )
                    found.setdefault(ref.uid, ref)
        owned = []
        for ref in found.values():
            current = api.get(ref.plural, ref.namespace, ref.name)
            if current is None or (current.get("metadata") or {}).get("uid") != ref.uid:
                continue  # already gone (a same-named object of someone else is left alone)
            labels = ownership_labels(self.run_id, self.name, ref.primitive)
            if not _owned_by(current.get("metadata") or {}, labels):
                raise UnsafeTarget(
                    f"{self.name}: {ref} does not carry K2's labels for run {self.run_id} ({labels}); K2 deletes only "
                    "objects it created. Delete it yourself if it is a leftover"
                )
            owned.append(ref)
        return owned


def _fields(primitive: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The typed fields of an applied primitive's effect (Chaos Mesh's status is the proof, in `detail`)."""
    if primitive in ("stop", "kill"):
        return {"signal": "pod-failure" if primitive == "stop" else "container-kill", "gone": True}
    if primitive == "isolate":
        clients = params.get("clients")
        return {"mode": params["mode"], "direction": params["direction"],
                "clients": tuple(clients) if clients else None}  # fmt: skip
    if primitive == "shape":
        return {"toxic": params["toxic"], "stream": params["stream"], "attributes": dict(params["attributes"])}
    if primitive == "fill_disk":
        return {"path": "the placement's volume"}
    if primitive == "skew_clock":
        return {"offset_seconds": float(params.get("offset_seconds") or 0.0)}
    return {}


def _owned_by(meta: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    present = meta.get("labels") or {}
    return all(present.get(k) == v for k, v in labels.items())


def _still_there(api: ChaosMeshApi, ref: ObjectRef) -> bool:
    obj = api.get(ref.plural, ref.namespace, ref.name)
    return obj is not None and (obj.get("metadata") or {}).get("uid") == ref.uid


def _state(api: ChaosMeshApi, ref: ObjectRef) -> dict[str, Any]:
    obj = api.get(ref.plural, ref.namespace, ref.name)
    return {} if obj is None else ChaosStatus.of(obj).summary()
