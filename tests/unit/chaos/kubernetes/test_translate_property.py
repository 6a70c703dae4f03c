"""Property: every valid K2 fault yields a Chaos Mesh object that passes the CRD schema (strict) and the
webhook's rules, or `Unsupported` — never another error, never an object a cluster would refuse.

Faults are built with K2's own fault classes, so "valid" means what K2's validation accepts."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.chaos.kubernetes.crds import schema_errors

from k2.chaos.errors import InvalidFault, Unsupported
from k2.chaos.faults import DiskFill, FaultSpec, NetworkPartition, ResourceLimit, ServiceFailure
from k2.chaos.faults.network import Bandwidth, ConnectionReset, DataLimit, Latency, Slicer, SlowClose, Timeout
from k2.chaos.kubernetes import ChaosRequest, Placement, admission_errors, translate

PLACEMENT = Placement(
    "kafka",
    "shop",
    {"app": "kafka"},
    container="broker",
    volume_path="/data",
    clients={"producer": {"role": "producer"}, "consumer": {"role": "producer"}, "writer": {"role": "writer"}},
)

durations = st.one_of(st.none(), st.floats(min_value=0.001, max_value=86400), st.integers(1, 86400))
clients = st.one_of(st.none(), st.lists(st.sampled_from(["producer", "consumer", "writer"]), min_size=1, max_size=3))
ms = st.integers(0, 100_000)
streams = st.sampled_from(["upstream", "downstream"])
toxicity = st.one_of(st.just(1.0), st.floats(0, 1))


def _try(build: Any) -> FaultSpec[Any] | None:
    try:
        return build()
    except InvalidFault:
        return None  # not a valid K2 fault: outside the property


@st.composite
def k2_faults(draw: st.DrawFn) -> FaultSpec[Any] | None:
    duration = draw(durations)
    kind = draw(st.sampled_from(["service", "partition", "latency", "bandwidth", "toxic", "disk", "limit"]))
    listed = draw(clients)
    common = {"stream": draw(streams), "toxicity": draw(toxicity), "clients": tuple(listed) if listed else None}
    if kind == "service":
        mode = draw(st.sampled_from(["stop", "pause", "kill"]))
        return _try(lambda: ServiceFailure(target="kafka", duration_s=duration, mode=mode))
    if kind == "partition":
        mode, direction = (
            draw(st.sampled_from(["refuse", "blackhole"])),
            draw(st.sampled_from(["both", "upstream", "downstream"])),
        )
        cut = draw(clients)
        return _try(lambda: NetworkPartition(target="kafka", duration_s=duration, mode=mode, direction=direction,
                                             clients=tuple(cut) if cut else None))  # fmt: skip
    if kind == "latency":
        attributes = {"latency": draw(ms), "jitter": draw(ms)}
        return _try(lambda: Latency(target="kafka", duration_s=duration, attributes=attributes, **common))
    if kind == "bandwidth":
        rate = {"rate": draw(st.integers(0, 10**9))}
        return _try(lambda: Bandwidth(target="kafka", duration_s=duration, attributes=rate, **common))
    if kind == "toxic":
        cls = draw(st.sampled_from([ConnectionReset, Timeout, SlowClose, Slicer, DataLimit]))
        attributes = {
            ConnectionReset: {"timeout": 0},
            Timeout: {"timeout": 10},
            SlowClose: {"delay": 5},
            Slicer: {"average_size": 8},
            DataLimit: {"bytes": 100},
        }[cls]
        return _try(lambda: cls(target="kafka", duration_s=duration, attributes=attributes, **common))
    if kind == "disk":
        size = draw(st.one_of(st.none(), st.sampled_from(["1m", "16m", 4096])))
        fullness = draw(st.floats(0.001, 1.0) | st.just(1.0))
        return _try(lambda: DiskFill(target="kafka", duration_s=duration, fullness=fullness, size=size))
    quota, mem = draw(st.integers(1000, 100_000)), draw(st.sampled_from(["64m", None]))
    return _try(lambda: ResourceLimit(target="kafka", duration_s=duration, cpu_quota=quota, mem_limit=mem))


def _assert_valid_or_unsupported(request: ChaosRequest) -> None:
    try:
        chaos = translate(request, PLACEMENT, "prop1234")
    except Unsupported as exc:
        assert str(exc).startswith("kafka:"), exc  # names the service and says why
        return
    manifest = chaos.manifest()
    assert schema_errors(manifest) == []
    assert admission_errors(manifest) == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k2_faults())
def test_every_valid_k2_fault_is_a_valid_object_or_unsupported(fault: FaultSpec[Any] | None) -> None:
    if fault is None:
        return
    # A held fault (no duration) runs as long as the target's hold cap; pod-failure needs some duration.
    request = ChaosRequest(fault.primitive, fault.arguments(), "kafka", fault.duration_s or 3600.0)
    _assert_valid_or_unsupported(request)


@settings(max_examples=200, deadline=None)
@given(st.floats(-365 * 86400, 365 * 86400, allow_nan=False), durations)
def test_every_clock_skew_is_a_valid_object_or_refused(offset: float, duration: float | None) -> None:
    request = ChaosRequest("skew_clock", {"offset_seconds": offset}, "kafka", duration)
    try:
        _assert_valid_or_unsupported(request)
    except InvalidFault:
        assert round(offset * 1e9) == 0  # only a zero offset (nothing to inject) is refused
