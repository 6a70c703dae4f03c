"""Each K2 primitive -> its Chaos Mesh object, validated against the v2.8.3 CRDs (strict) and the webhook's
rules; and `Unsupported`, with the reason and the route, where Chaos Mesh has no mapping.
No cluster is involved: not tested against a live cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.unit.chaos.kubernetes.crds import schema_errors

from k2.chaos.errors import InvalidFault, UnsafeTarget, Unsupported
from k2.chaos.kubernetes import ChaosRequest, Placement, admission_errors, translate
from k2.chaos.kubernetes.translate import ENOSPC

RUN = "run42abc"
KAFKA = Placement(
    "kafka",
    "k2-chaos",
    {"app.kubernetes.io/name": "kafka"},
    container="broker",
    volume_path="/var/lib/kafka",
    clients={"producer": {"app": "producer"}, "writer": {"app": "writer"}},
)


def build(primitive: str, params: dict[str, Any] | None = None, duration: float | None = 30) -> dict[str, Any]:
    chaos = translate(ChaosRequest(primitive, params or {}, "kafka", duration), KAFKA, RUN)
    manifest = chaos.manifest()
    assert schema_errors(manifest) == []
    assert admission_errors(manifest) == []
    labels = manifest["metadata"]["labels"]
    assert labels["k2.chaos/run"] == RUN and labels["app.kubernetes.io/managed-by"] == "k2"
    assert manifest["spec"]["selector"] == {
        "namespaces": ["k2-chaos"],
        "labelSelectors": {"app.kubernetes.io/name": "kafka"},
    }
    return manifest


def test_stop_is_pod_failure_for_the_duration() -> None:
    m = build("stop", duration=5)
    assert (m["kind"], m["spec"]["action"], m["spec"]["mode"], m["spec"]["duration"]) == (
        "PodChaos",
        "pod-failure",
        "all",
        "5s",
    )


def test_kill_is_container_kill_naming_the_container() -> None:
    m = build("kill", duration=2.5)
    assert m["spec"]["action"] == "container-kill" and m["spec"]["containerNames"] == ["broker"]
    assert "duration" not in m["spec"]  # one-shot: Chaos Mesh ignores it


@pytest.mark.parametrize(("direction", "expected"), [("both", "both"), ("upstream", "from"), ("downstream", "to")])
def test_blackhole_partition_directions(direction: str, expected: str) -> None:
    m = build("isolate", {"mode": "blackhole", "direction": direction, "clients": None})
    assert (m["kind"], m["spec"]["action"], m["spec"]["direction"]) == ("NetworkChaos", "partition", expected)
    assert "target" not in m["spec"]


def test_partial_partition_targets_the_named_clients_pods() -> None:
    m = build("isolate", {"mode": "blackhole", "direction": "upstream", "clients": ["producer"]})
    assert m["spec"]["target"] == {
        "mode": "all",
        "selector": {"namespaces": ["k2-chaos"], "labelSelectors": {"app": "producer"}},
    }


def test_latency_with_jitter_is_netem_delay_on_the_services_egress() -> None:
    m = build(
        "shape",
        {
            "toxic": "latency",
            "stream": "downstream",
            "toxicity": 1.0,
            "attributes": {"latency": 200, "jitter": 50},
            "clients": None,
        },
    )
    assert m["spec"]["action"] == "delay" and m["spec"]["direction"] == "to"
    assert m["spec"]["delay"] == {"latency": "200ms", "jitter": "50ms", "correlation": "0"}


def test_upstream_latency_needs_the_clients_as_target() -> None:
    m = build("shape", {"toxic": "latency", "stream": "upstream", "attributes": {"latency": 10}, "clients": ["writer"]})
    assert m["spec"]["direction"] == "from" and m["spec"]["target"]["selector"]["labelSelectors"] == {"app": "writer"}
    with pytest.raises(Unsupported, match="target"):
        translate(
            ChaosRequest(
                "shape", {"toxic": "latency", "stream": "upstream", "attributes": {"latency": 10}}, "kafka", 5
            ),
            KAFKA,
            RUN,
        )


def test_bandwidth_in_kilobytes_per_second() -> None:
    m = build("shape", {"toxic": "bandwidth", "stream": "downstream", "attributes": {"rate": 64}})
    assert m["spec"]["action"] == "bandwidth"
    assert m["spec"]["bandwidth"]["rate"] == "64kbps"  # tc's kbps: kilobytes/s, as the fault proxy's rate
    assert m["spec"]["bandwidth"]["buffer"] >= 1 and m["spec"]["bandwidth"]["limit"] >= m["spec"]["bandwidth"]["buffer"]


def test_clock_skew_is_time_chaos_with_a_signed_offset() -> None:
    m = build("skew_clock", {"offset_seconds": -90})
    assert (m["kind"], m["spec"]["timeOffset"], m["spec"]["clockIds"]) == ("TimeChaos", "-90s", ["CLOCK_REALTIME"])


def test_full_disk_is_enospc_on_the_data_volume() -> None:
    m = build("fill_disk", {"size": None, "fullness": 1.0})
    spec = m["spec"]
    assert (m["kind"], spec["action"], spec["errno"], spec["volumePath"], spec["percent"]) == (
        "IOChaos",
        "fault",
        ENOSPC,
        "/var/lib/kafka",
        100,
    )
    assert "write" in spec["methods"] and "read" not in spec["methods"]  # a full disk still reads


@pytest.mark.parametrize(
    ("primitive", "params", "reason"),
    [
        ("pause", {}, "no freeze"),
        ("limit", {"cpu_quota": 50000, "mem_limit": "512m"}, "cannot cap"),
        ("isolate", {"mode": "refuse", "direction": "both"}, "fault proxy"),
        ("shape", {"toxic": "reset_peer", "attributes": {"timeout": 0}}, "fault proxy"),
        ("shape", {"toxic": "timeout", "attributes": {"timeout": 0}}, "fault proxy"),
        ("shape", {"toxic": "slicer", "attributes": {"average_size": 10}}, "fault proxy"),
        ("shape", {"toxic": "latency", "toxicity": 0.5, "attributes": {"latency": 10}}, "probability"),
        ("shape", {"toxic": "bandwidth", "attributes": {"rate": 0}}, "unlimited"),
        ("fill_disk", {"size": "16m", "fullness": None}, "does not consume space"),
        ("fill_disk", {"size": None, "fullness": 0.5}, "does not consume space"),
        ("skew_clock", {"jump_to": 1e9}, "offset"),
    ],
)
def test_no_mapping_is_unsupported_with_the_reason(primitive: str, params: dict[str, Any], reason: str) -> None:
    with pytest.raises(Unsupported, match=reason):
        translate(ChaosRequest(primitive, params, "kafka", 5), KAFKA, RUN)


def test_placement_problems_name_the_remedy() -> None:
    bare = Placement("kafka", "k2-chaos", {"app": "kafka"})
    with pytest.raises(InvalidFault, match="'container'"):
        translate(ChaosRequest("kill", {}, "kafka", 5), bare, RUN)
    with pytest.raises(InvalidFault, match="'volume_path'"):
        translate(ChaosRequest("fill_disk", {"fullness": 1.0}, "kafka", 5), bare, RUN)
    with pytest.raises(InvalidFault, match="no pod selector"):
        translate(ChaosRequest("isolate", {"mode": "blackhole", "clients": ["nobody"]}, "kafka", 5), bare, RUN)
    with pytest.raises(InvalidFault, match="requires a duration"):
        translate(ChaosRequest("stop", {}, "kafka", None), bare, RUN)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"selector": {}}, UnsafeTarget),  # an empty selector is the whole namespace
        ({"namespace": "kube-system"}, UnsafeTarget),
        ({"namespace": "Bad_NS"}, InvalidFault),
        ({"selector": {"app": "x" * 64}}, InvalidFault),
        ({"selector": {"-bad": "x"}}, InvalidFault),
        ({"container": "Not A Name"}, InvalidFault),
        ({"volume_path": "relative/path"}, InvalidFault),
    ],
)
def test_placement_is_validated(kwargs: dict[str, Any], error: type[Exception]) -> None:
    args: dict[str, Any] = {"service": "kafka", "namespace": "k2-chaos", "selector": {"app": "kafka"}, **kwargs}
    with pytest.raises(error):
        Placement(**args)


def test_object_names_are_dns_labels_even_for_long_service_names() -> None:
    long = Placement("s" * 63, "k2-chaos", {"app": "x"})
    chaos = translate(ChaosRequest("skew_clock", {"offset_seconds": 1}, "s" * 63, 5), long, RUN)
    assert len(chaos.name) <= 63 and schema_errors(chaos.manifest()) == []


def test_the_strict_validator_refuses_unknown_fields() -> None:
    m = build("stop")
    m["spec"]["selector"]["labelSelector"] = {"app": "typo"}  # the real field is labelSelectors
    assert any("labelSelector" in e for e in schema_errors(m))
    m = build("stop")
    m["spec"]["durationSeconds"] = 5
    assert schema_errors(m)
    m = build("stop")
    m["metadata"]["labelz"] = {}
    assert schema_errors(m)


def test_missing_crds_fail_loudly_instead_of_skipping(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.unit.chaos.kubernetes import crds

    monkeypatch.setenv(crds.ENV, str(tmp_path / "absent.yaml"))
    crds._crds.cache_clear()
    crds.validator.cache_clear()
    try:
        with pytest.raises(pytest.fail.Exception, match="Chaos Mesh CRDs not found"):
            crds.schema_errors({"kind": "PodChaos"})
    finally:
        crds._crds.cache_clear()
        crds.validator.cache_clear()
    monkeypatch.delenv(crds.ENV)
    assert crds.crd_path().is_file()  # found beside the checkout, as CI lays shared/ beside its clone
