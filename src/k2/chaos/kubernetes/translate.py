"""K2 faults as Chaos Mesh objects: one translation per target primitive, or `Unsupported` with the reason.

The input is deliberately narrow — a `ChaosRequest`: the primitive (stop, kill, isolate, shape,
fill_disk, skew_clock, ...), its validated parameters as K2 journals them, the service and the
duration — so any fault model that can say those four things can use it. The output is a
`ChaosObject`: the kind, a name, the ownership labels, and a spec without `duration` (a Workflow
template carries its length as `deadline` instead; `manifest()` adds `duration` for a standalone
object).

Mappings (Chaos Mesh v2.8.3):
  stop -> PodChaos pod-failure        kill -> PodChaos container-kill (the kubelet restarts it)
  isolate (blackhole; both/upstream/downstream; clients) -> NetworkChaos partition, direction + target
  shape latency -> NetworkChaos delay   shape bandwidth -> NetworkChaos bandwidth
  skew_clock -> TimeChaos             fill_disk (full) -> IOChaos fault, errno 28 (ENOSPC), on the volume
No mapping (Unsupported, with the route that works): pause, limit, refuse-style partitions, the other
toxics, partial disk fills.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from k2.chaos.errors import InvalidFault, Unsupported
from k2.chaos.kubernetes.durations import format_go_duration
from k2.chaos.kubernetes.placement import Placement, ownership_labels

__all__ = [
    "API_VERSION",
    "ENOSPC",
    "FULL_DISK_METHODS",
    "PROXY_ROUTE",
    "ChaosObject",
    "ChaosRequest",
    "translate",
]

API_VERSION = "chaos-mesh.org/v1alpha1"
ENOSPC = 28
# The operations a full filesystem fails with ENOSPC; reads, stats and deletes keep working, as on a real full disk.
FULL_DISK_METHODS = ("write", "create", "mknod", "mkdir", "symlink", "link", "setxattr", "fsync", "flush")
PROXY_ROUTE = (
    "run K2's fault proxy in front of the service (a sidecar container listening on the service's port, the "
    "Service's targetPort pointed at it; see README 'Kubernetes') and inject this fault through it"
)
MAX_SECONDS = 365 * 86400  # far inside Go's int64 nanoseconds (~292 years)
PLURALS = {"PodChaos": "podchaos", "NetworkChaos": "networkchaos", "TimeChaos": "timechaos", "IOChaos": "iochaos"}


@dataclass(frozen=True)
class ChaosRequest:
    """What to do (a target primitive and its journaled parameters), to which service, for how long
    (None: until deleted)."""

    primitive: str
    params: Mapping[str, Any]
    service: str
    duration_s: float | None = None


@dataclass(frozen=True)
class ChaosObject:
    """One Chaos Mesh object K2 will create. `spec` has no `duration`: see `manifest`."""

    kind: str
    name: str
    namespace: str
    primitive: str
    spec: dict[str, Any]
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    duration_s: float | None = None
    one_shot: bool = False  # container-kill acts once; Chaos Mesh ignores a duration for it

    @property
    def plural(self) -> str:
        return PLURALS[self.kind]

    @property
    def template_field(self) -> str:
        """The Workflow template field that embeds this spec (podChaos, networkChaos, ioChaos, timeChaos)."""
        return {"IOChaos": "ioChaos"}.get(self.kind, self.kind[0].lower() + self.kind[1:])

    def manifest(self) -> dict[str, Any]:
        """The object to create, `duration` included (Chaos Mesh stops the fault by itself when it ends,
        a second safety net behind K2's own restore)."""
        spec = dict(self.spec)
        if self.duration_s is not None and not self.one_shot:
            spec["duration"] = format_go_duration(self.duration_s)
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": dict(self.labels),
                "annotations": dict(self.annotations),
            },
            "spec": spec,
        }


Translator = Callable[[ChaosRequest, Placement], tuple[str, dict[str, Any]]]
_TRANSLATORS: dict[str, Translator] = {}


def _translates(*primitives: str) -> Callable[[Translator], Translator]:
    def register(fn: Translator) -> Translator:
        for primitive in primitives:
            _TRANSLATORS[primitive] = fn
        return fn

    return register


def translate(request: ChaosRequest, placement: Placement, run_id: str, *, name: str | None = None) -> ChaosObject:
    """The Chaos Mesh object for `request` on `placement`'s pods, labelled as run `run_id`'s.
    Raises `Unsupported` (no mapping exists, and why) or `InvalidFault` (the request or placement is wrong)."""
    if request.service != placement.service:
        raise InvalidFault(f"request for {request.service!r} given the placement of {placement.service!r}")
    if request.duration_s is not None and not (
        isinstance(request.duration_s, int | float) and not isinstance(request.duration_s, bool)
    ):
        raise InvalidFault(f"{request.service}: duration {request.duration_s!r} must be a number of seconds")
    if request.duration_s is not None and not 0 < request.duration_s <= MAX_SECONDS:
        raise InvalidFault(f"{request.service}: duration {request.duration_s} must be positive and at most a year")
    translator = _TRANSLATORS.get(request.primitive)
    if translator is None:
        _unsupported_primitive(request)
    kind, spec = translator(request, placement)
    if kind == "PodChaos" and spec["action"] == "pod-failure" and request.duration_s is None:
        raise InvalidFault(f"{request.service}: Chaos Mesh requires a duration for pod-failure; give one")
    return ChaosObject(
        kind=kind,
        name=name or object_name(request.service, request.primitive, run_id),
        namespace=placement.namespace,
        primitive=request.primitive,
        spec=spec,
        labels=ownership_labels(run_id, request.service, request.primitive),
        annotations={
            "k2.chaos/request": json.dumps(
                {"primitive": request.primitive, **request.params}, sort_keys=True, default=str
            )
        },
        duration_s=request.duration_s,
        one_shot=kind == "PodChaos" and spec["action"] == "container-kill",
    )


def object_name(service: str, primitive: str, run_id: str) -> str:
    """k2-<service>-<primitive>-<run>-<random>, at most 63 characters (a DNS label, safe everywhere)."""
    suffix = f"-{primitive.replace('_', '-')}-{run_id[:8]}-{secrets.token_hex(3)}"
    head = f"k2-{service}"[: 63 - len(suffix)].rstrip("-.")
    return head + suffix


def _unsupported_primitive(request: ChaosRequest) -> NoReturn:
    reasons = {
        "pause": "Chaos Mesh has no freeze: pod-failure restarts the containers with a pause image, which is a stop. "
        "Use service_failure(mode='stop'), or freeze the process inside the pod with a privileged debug container",
        "limit": "Chaos Mesh cannot cap a pod's CPU or memory (StressChaos consumes them, it does not limit): change "
        "the pod's resources (a restart, or an in-place resize where the cluster supports it) outside K2",
    }
    reason = reasons.get(request.primitive, f"no Chaos Mesh mapping for the primitive {request.primitive!r}")
    raise Unsupported(f"{request.service}: {request.primitive} on Kubernetes: {reason}")


def _pods(placement: Placement, selector: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"namespaces": [placement.namespace], "labelSelectors": dict(selector or placement.selector)}


def _containers(placement: Placement) -> dict[str, Any]:
    return {"containerNames": [placement.container]} if placement.container else {}


@_translates("stop")
def _stop(request: ChaosRequest, placement: Placement) -> tuple[str, dict[str, Any]]:
    return "PodChaos", {"action": "pod-failure", "mode": "all", "selector": _pods(placement)}


@_translates("kill")
def _kill(request: ChaosRequest, placement: Placement) -> tuple[str, dict[str, Any]]:
    if not placement.container:
        raise InvalidFault(
            f"{placement.service}: kill on Kubernetes is Chaos Mesh's container-kill, which needs the container's "
            "name: set 'container' in the service's placement"
        )
    return "PodChaos", {
        "action": "container-kill",
        "mode": "all",
        "selector": _pods(placement),
        **_containers(placement),
    }


_DIRECTIONS = {"both": "both", "upstream": "from", "downstream": "to"}


def _clients(request: ChaosRequest) -> list[str] | None:
    clients = request.params.get("clients")
    if clients is None:
        return None
    if isinstance(clients, str) or not isinstance(clients, list | tuple) or not clients:
        raise InvalidFault(f"{request.service}: clients={clients!r} must be a non-empty list of client labels")
    return list(clients)


def _network_target(request: ChaosRequest, placement: Placement) -> dict[str, Any]:
    clients = _clients(request)
    if clients is None:
        return {}
    return {"target": {"mode": "all", "selector": _pods(placement, placement.client_selector(clients))}}


@_translates("isolate")
def _isolate(request: ChaosRequest, placement: Placement) -> tuple[str, dict[str, Any]]:
    mode, direction = request.params.get("mode", "blackhole"), request.params.get("direction", "both")
    if mode == "refuse":
        raise Unsupported(
            f"{placement.service}: a refusing partition on Kubernetes: Chaos Mesh's partition drops packets "
            "(nothing answers with a refusal), so only mode='blackhole' maps. To refuse connections, " + PROXY_ROUTE
        )
    if mode != "blackhole" or direction not in _DIRECTIONS:
        raise InvalidFault(f"{placement.service}: isolate mode={mode!r} direction={direction!r} is not a K2 partition")
    return "NetworkChaos", {
        "action": "partition",
        "mode": "all",
        "selector": _pods(placement),
        "direction": _DIRECTIONS[direction],
        **_network_target(request, placement),
    }


def _milliseconds(value: object, what: str, service: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidFault(f"{service}: {what}={value!r} must be a whole number of milliseconds >= 0")
    return value


@_translates("shape")
def _shape(request: ChaosRequest, placement: Placement) -> tuple[str, dict[str, Any]]:
    toxic, service = request.params.get("toxic"), placement.service
    attributes = dict(request.params.get("attributes") or {})
    if toxic not in ("latency", "bandwidth"):
        raise Unsupported(
            f"{service}: the {toxic!r} toxic on Kubernetes: Chaos Mesh shapes packets (delay, loss, bandwidth) and "
            "has no stream-level fault of this kind. " + PROXY_ROUTE.capitalize()
        )
    toxicity = request.params.get("toxicity", 1.0)
    if toxicity != 1.0:
        raise Unsupported(
            f"{service}: toxicity={toxicity} on Kubernetes: netem has no per-connection probability, so only "
            "toxicity 1.0 maps. " + PROXY_ROUTE.capitalize()
        )
    stream = request.params.get("stream", "downstream")
    target = _network_target(request, placement)
    if stream == "upstream" and not target:
        raise Unsupported(
            f"{service}: shaping the upstream stream (requests into the service) on Kubernetes: netem shapes what a "
            "pod sends, so Chaos Mesh needs the client pods as `target` for direction 'from': name `clients` that "
            "have pod selectors in the placement, or shape the downstream stream"
        )
    if stream not in ("upstream", "downstream"):
        raise InvalidFault(f"{service}: stream={stream!r}: use 'upstream' or 'downstream'")
    spec: dict[str, Any] = {
        "mode": "all",
        "selector": _pods(placement),
        "direction": "from" if stream == "upstream" else "to",
        **target,
    }
    if toxic == "latency":
        latency = _milliseconds(attributes.get("latency", 0), "latency", service)
        jitter = _milliseconds(attributes.get("jitter", 0), "jitter", service)
        spec["action"] = "delay"
        spec["delay"] = {"latency": f"{latency}ms", "jitter": f"{jitter}ms", "correlation": "0"}
    else:
        rate = attributes.get("rate", 0)
        if isinstance(rate, bool) or not isinstance(rate, int) or rate < 0:
            raise InvalidFault(f"{service}: bandwidth rate={rate!r} must be a whole number of KB/s >= 0")
        if rate == 0:
            raise Unsupported(f"{service}: bandwidth rate=0 means unlimited: there is nothing to inject")
        rate_bytes = rate * 1000
        int32 = 2**31 - 1
        # tc's tbf: the bucket holds at least an MTU and ~10 ms of the rate; the queue at least ~1 s of it.
        buffer = min(int32, max(10_000, rate_bytes // 100))
        spec["action"] = "bandwidth"
        spec["bandwidth"] = {"rate": f"{rate}kbps", "buffer": buffer, "limit": min(int32, max(buffer, rate_bytes))}
    return "NetworkChaos", spec


@_translates("fill_disk")
def _fill_disk(request: ChaosRequest, placement: Placement) -> tuple[str, dict[str, Any]]:
    size, fullness = request.params.get("size"), request.params.get("fullness", 1.0)
    if size is not None or fullness != 1.0:
        raise Unsupported(
            f"{placement.service}: a partial disk fill (size={size!r}, fullness={fullness!r}) on Kubernetes: IOChaos "
            "makes writes fail with ENOSPC, it does not consume space, so only a full disk (fullness=1.0) maps. Fill "
            "the volume partly with a Job that mounts it"
        )
    if not placement.volume_path:
        raise InvalidFault(
            f"{placement.service}: disk pressure on Kubernetes needs the data volume's mount path: set "
            "'volume_path' in the service's placement"
        )
    return "IOChaos", {
        "action": "fault",
        "mode": "all",
        "selector": _pods(placement),
        "volumePath": placement.volume_path,
        "errno": ENOSPC,
        "percent": 100,
        "methods": list(FULL_DISK_METHODS),
        **_containers(placement),
    }


@_translates("skew_clock")
def _skew_clock(request: ChaosRequest, placement: Placement) -> tuple[str, dict[str, Any]]:
    if request.params.get("jump_to") is not None:
        raise Unsupported(
            f"{placement.service}: a jump to an absolute time on Kubernetes: TimeChaos shifts clocks by an offset; "
            "give offset_seconds instead"
        )
    offset = request.params.get("offset_seconds")
    if (
        isinstance(offset, bool)
        or not isinstance(offset, int | float)
        or not abs(offset) <= MAX_SECONDS  # also refuses NaN
        or round(offset * 1e9) == 0
    ):
        raise InvalidFault(
            f"{placement.service}: offset_seconds={offset!r} must be a non-zero number of seconds within a year"
        )
    return "TimeChaos", {
        "mode": "all",
        "selector": _pods(placement),
        "timeOffset": format_go_duration(float(offset)),
        "clockIds": ["CLOCK_REALTIME"],
        **_containers(placement),
    }
