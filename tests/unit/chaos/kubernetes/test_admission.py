"""Chaos Mesh's admission-webhook rules (v2.8.3, `api/v1alpha1/*_webhook.go`) as K2 checks them, and
durations read exactly as Go's `time.ParseDuration` reads them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k2.chaos.errors import InvalidFault
from k2.chaos.kubernetes import admission_errors, check_admission, format_go_duration, parse_go_duration

NS, US, MS, S, M, H = 1, 1_000, 1_000_000, 1_000_000_000, 60_000_000_000, 3_600_000_000_000


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("-0", 0),
        ("+0", 0),
        ("5s", 5 * S),
        ("30s", 30 * S),
        ("1478s", 1478 * S),
        ("-5s", -5 * S),
        ("+5s", 5 * S),
        ("-0s", 0),
        ("10ns", 10),
        ("11us", 11 * US),
        ("12µs", 12 * US),
        ("12μs", 12 * US),
        ("13ms", 13 * MS),
        ("14s", 14 * S),
        ("15m", 15 * M),
        ("16h", 16 * H),
        ("3h30m", 3 * H + 30 * M),
        ("10.5s4m", 4 * M + 10 * S + 500 * MS),
        ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
        ("1h2m3s4ms5us6ns", H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS),
        ("39h9m14.425s", 39 * H + 9 * M + 14425 * MS),
        ("5.s", 5 * S),
        (".5s", 500 * MS),
        ("1.0s", S),
        ("1.00s", S),
        ("1.004s", S + 4 * MS),
        ("100.00100s", 100 * S + MS),
        ("52763797000ns", 52763797000),
        ("0.3333333333333333333h", 20 * M),
        ("9223372036854775807ns", (1 << 63) - 1),
        ("9223372036854775.807us", (1 << 63) - 1),
        ("-9223372036854775808ns", -(1 << 63)),
        ("0.100000000000000000000h", 6 * M),
        ("0.830103483285477580700h", 49 * M + 48 * S + 372539827 * NS),
    ],
)
def test_go_parse_duration_accepts(text: str, ns: int) -> None:
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize(
    "text",
    [
        "",
        "3",
        "-",
        "s",
        ".",
        "-.",
        ".s",
        "+.s",
        "1d",
        "1.5",
        "1 s",
        " 1s",
        "1s ",
        "1e3s",
        "\x85\x85",
        "3000000h",
        "9223372036854775808ns",
        "9223372036854775.808us",
        "9223372036854ms775us808ns",
        "-9223372036854775809ns",
        "1sec",
        "5S",
        "1_000ms",
        "٣s",
    ],
)
def test_go_parse_duration_refuses(text: str) -> None:
    with pytest.raises(InvalidFault):
        parse_go_duration(text)


@given(st.floats(min_value=-365 * 86400, max_value=365 * 86400, allow_nan=False).filter(lambda x: round(x * 1e9) != 0))
def test_formatted_durations_parse_back_exactly(seconds: float) -> None:
    text = format_go_duration(seconds)
    assert parse_go_duration(text) == round(seconds * 1e9)


def pod(action: str = "pod-failure", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "PodChaos",
        "metadata": {"name": "x", "namespace": "n"},
        "spec": {"action": action, "mode": "all", "selector": {"labelSelectors": {"a": "b"}}, **spec},
    }


def net(action: str, **spec: Any) -> dict[str, Any]:
    m = pod()
    m["kind"], m["spec"] = "NetworkChaos", {"action": action, "mode": "all", "selector": {}, **spec}
    return m


def test_container_kill_requires_container_names() -> None:
    assert any("containerNames" in e for e in admission_errors(pod("container-kill")))
    assert admission_errors(pod("container-kill", containerNames=["c"])) == []


@pytest.mark.parametrize(
    ("mode", "value", "ok"),
    [
        ("fixed", "2", True),
        ("fixed", "+2", True),
        ("fixed", "0", False),
        ("fixed", "-1", False),
        ("fixed", "", False),
        ("fixed", "two", False),
        ("fixed", " 2", False),
        ("fixed-percent", "100", True),
        ("fixed-percent", "101", False),
        ("random-max-percent", "0", False),
        ("random-max-percent", "50", True),
        ("one", "", True),
        ("all", "junk", True),
    ],
)
def test_value_is_required_for_fixed_modes(mode: str, value: str, ok: bool) -> None:
    m = pod(mode=mode, value=value)
    assert (admission_errors(m) == []) is ok


def test_durations_parse_like_go() -> None:
    assert admission_errors(pod(duration="1m30s")) == []
    assert admission_errors(pod(duration="")) == []  # empty is allowed: no duration
    assert any("duration" in e for e in admission_errors(pod(duration="90")))
    time = {**pod(), "kind": "TimeChaos"}
    time["spec"] = {"mode": "all", "selector": {}, "timeOffset": ""}
    assert any("timeOffset" in e for e in admission_errors(time))  # timeOffset has no empty exception
    time["spec"]["timeOffset"] = "-10m"
    assert admission_errors(time) == []


def test_two_way_netem_needs_a_target_but_partition_does_not() -> None:
    delay = {"latency": "10ms"}
    assert admission_errors(net("delay", delay=delay, direction="to")) == []
    assert admission_errors(net("delay", delay=delay)) == []  # direction defaults to "to"
    for direction in ("from", "both"):
        assert any("target" in e for e in admission_errors(net("delay", delay=delay, direction=direction)))
        with_target = net("delay", delay=delay, direction=direction, target={"mode": "all", "selector": {}})
        assert admission_errors(with_target) == []
        external = copy.deepcopy(with_target)
        external["spec"]["externalTargets"] = ["1.2.3.4"]
        assert any("external" in e for e in admission_errors(external))
        assert admission_errors(net("partition", direction=direction)) == []


@pytest.mark.parametrize(
    ("rate", "ok"),
    [
        ("1mbps", True),
        ("64kbps", True),
        ("10 kbit", True),
        ("1MBPS", True),
        ("1.5mbps", False),
        ("mbps", False),
        ("100", False),
        ("-1kbps", False),
    ],
)
def test_bandwidth_rate_needs_an_integer_and_a_unit(rate: str, ok: bool) -> None:
    m = net("bandwidth", bandwidth={"rate": rate, "limit": 1, "buffer": 1})
    assert (admission_errors(m) == []) is ok


def test_correlation_errno_and_percent() -> None:
    assert any("correlation" in e for e in admission_errors(net("delay", delay={"latency": "1ms", "correlation": "x"})))
    assert admission_errors(net("delay", delay={"latency": "1ms", "correlation": "25.5"})) == []
    io = {**pod(), "kind": "IOChaos"}
    io["spec"] = {"action": "fault", "mode": "all", "selector": {}, "volumePath": "/d", "errno": 0}
    assert any("errno" in e for e in admission_errors(io))
    io["spec"].update(errno=28, percent=101)
    assert any("percent" in e for e in admission_errors(io))
    io["spec"]["percent"] = 100
    assert admission_errors(io) == []


def workflow(*templates: dict[str, Any], entry: str = "main") -> dict[str, Any]:
    return {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "w", "namespace": "n"},
        "spec": {"entry": entry, "templates": list(templates)},
    }


def test_workflow_rules() -> None:
    chaos = {
        "name": "stop",
        "templateType": "PodChaos",
        "deadline": "5s",
        "podChaos": {"action": "pod-failure", "mode": "all", "selector": {}},
    }
    serial = {"name": "main", "templateType": "Serial", "children": ["stop", "gap"]}
    gap = {"name": "gap", "templateType": "Suspend", "deadline": "2s"}
    assert admission_errors(workflow(serial, chaos, gap)) == []
    assert any("entry" in e for e in admission_errors(workflow(serial, chaos, gap, entry="nope")))
    assert any("unique" in e for e in admission_errors(workflow(serial, chaos, chaos, gap)))
    assert any("Suspend" in e for e in admission_errors(workflow(serial, chaos, {**gap, "deadline": ""})))
    assert any("can not find" in e for e in admission_errors(workflow({**serial, "children": ["x"]}, chaos, gap)))
    with_duration = {**chaos, "podChaos": {**chaos["podChaos"], "duration": "5s"}}
    assert any("deadline instead" in e for e in admission_errors(workflow(serial, with_duration, gap)))
    kill = {**chaos, "podChaos": {**chaos["podChaos"], "action": "container-kill"}}
    assert any("containerNames" in e for e in admission_errors(workflow(serial, kill, gap)))
    assert any("DNS-1123" in e for e in admission_errors(workflow(serial, {**chaos, "name": "Stop_1"}, gap)))
    assert any("unrecognized" in e for e in admission_errors(workflow(serial, {**chaos, "templateType": "X"}, gap)))


def test_check_admission_raises_naming_the_object() -> None:
    with pytest.raises(InvalidFault, match="PodChaos x would be refused.*containerNames"):
        check_admission(pod("container-kill"))
