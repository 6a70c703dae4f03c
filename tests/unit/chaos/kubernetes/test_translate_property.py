"""Property: every valid K2 fault yields a Chaos Mesh object that passes the CRD schema (strict) and the
webhook's rules, or `Unsupported` — never another error, never an object a cluster would refuse.

Faults are built with K2's own fault classes, so "valid" means what K2's validation accepts."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from k2.chaos.faults.base import Fault
from tests.unit.chaos.kubernetes.crds import schema_errors

from k2.chaos.errors import InvalidFault, Unsupported
from k2.chaos.faults import (
    Bandwidth,
    ConnectionReset,
    DataLimit,
    DiskFill,
    Latency,
    NetworkPartition,
    ResourceLimit,
    ServiceFailure,
    Slicer,
    SlowClose,
    Timeout,
)
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


def _try(build: Any) -> Fault | None:
    try:
        return build()
    except InvalidFault:
        return None  # not a valid K2 fault: outside the property


@st.composite
def k2_faults(draw: st.DrawFn) -> Fault | None:
    duration = draw(durations)
    kind = draw(st.sampled_from(["service", "partition", "latency", "bandwidth", "toxic", "disk", "limit"]))
    common = {"stream": draw(streams), "toxicity": draw(toxicity), "clients": draw(clients)}
    if kind == "service":
        return _try(lambda: ServiceFailure("kafka", duration, draw(st.sampled_from(["stop", "pause", "kill"]))))
    if kind == "partition":
        mode, direction = (
            draw(st.sampled_from(["refuse", "blackhole"])),
            draw(st.sampled_from(["both", "upstream", "downstream"])),
        )
        return _try(lambda: NetworkPartition("kafka", duration, mode, direction, draw(clients)))
    if kind == "latency":
        return _try(lambda: Latency("kafka", duration, latency=draw(ms), jitter=draw(ms), **common))
    if kind == "bandwidth":
        return _try(lambda: Bandwidth("kafka", duration, rate=draw(st.integers(0, 10**9)), **common))
    if kind == "toxic":
        cls = draw(st.sampled_from([ConnectionReset, Timeout, SlowClose, Slicer, DataLimit]))
        attributes = {
            ConnectionReset: {"timeout": 0},
            Timeout: {"timeout": 10},
            SlowClose: {"delay": 5},
            Slicer: {"average_size": 8},
            DataLimit: {"bytes": 100},
        }[cls]
        return _try(lambda: cls("kafka", duration, **attributes, **common))
    if kind == "disk":
        size = draw(st.one_of(st.none(), st.sampled_from(["1m", "16m", 4096])))
        return _try(lambda: DiskFill("kafka", duration, draw(st.floats(0.001, 1.0) | st.just(1.0)), size))
    return _try(
        lambda: ResourceLimit(
            "kafka", draw(st.integers(1000, 100_000)), draw(st.sampled_from(["64m", None])), duration_seconds=duration
        )
    )


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
def test_every_valid_k2_fault_is_a_valid_object_or_unsupported(fault: Fault | None) -> None:
    if fault is None:
        return
    # A held fault (no duration) runs as long as the target's hold cap; pod-failure needs some duration.
    _assert_valid_or_unsupported(ChaosRequest(fault.primitive, fault.params(), "kafka", fault.duration or 3600.0))


@settings(max_examples=200, deadline=None)
@given(st.floats(-365 * 86400, 365 * 86400, allow_nan=False), durations)
def test_every_clock_skew_is_a_valid_object_or_refused(offset: float, duration: float | None) -> None:
    request = ChaosRequest("skew_clock", {"offset_seconds": offset}, "kafka", duration)
    try:
        _assert_valid_or_unsupported(request)
    except InvalidFault:
        assert round(offset * 1e9) == 0  # only a zero offset (nothing to inject) is refused
