"""The catalogue of fault kinds: complete, its bounds agree with the specs' validation, every drawn spec is
valid and replayable, and `k2 chaos list` shows it."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k2.chaos.errors import InvalidFault
from k2.chaos.faults import FaultSpec
from k2.chaos.faults.catalogue import BACKENDS, CATALOGUE, kind, support
from k2.chaos.targets import builtin_class


def test_every_registered_fault_kind_is_in_the_catalogue() -> None:
    assert set(CATALOGUE) == set(FaultSpec.registry)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_defaults_build_a_valid_spec_of_the_kind(name: str) -> None:
    entry = CATALOGUE[name]
    values = {p.name: p.default for p in entry.params if p.default is not None or p.optional}
    if name == "slicer":  # the one toxic attribute without a default
        values["average_size"] = 64
    if name == "clock_skew":  # one of offset_seconds or jump_to, neither by default
        values["offset_seconds"] = 60.0
    spec = entry.build("kafka", entry.duration_default, **values)
    assert spec.kind == name and spec.capability in entry.capabilities.values()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), name=st.sampled_from(sorted(CATALOGUE)))
def test_drawn_specs_are_valid_and_replay_from_their_seed(seed: int, name: str) -> None:
    first = kind(name).draw(random.Random(seed), "kafka")
    again = kind(name).draw(random.Random(seed), "kafka")
    assert first == again
    assert FaultSpec.from_description(first.describe()) == first


@pytest.mark.parametrize(
    ("name", "param", "text", "value"),
    [
        ("resource_limit", "cpu_quota", "20000", 20000),
        ("resource_limit", "mem_limit", "none", None),
        ("resource_limit", "mem_limit", "512m", "512m"),
        ("network_partition", "clients", "producer,consumer", ["producer", "consumer"]),
        ("disk_fill", "fullness", "0.5", 0.5),
    ],
)
def test_command_line_values_are_parsed_by_type(name: str, param: str, text: str, value: object) -> None:
    assert next(p for p in kind(name).params if p.name == param).parse(text) == value


def test_unknown_kinds_and_parameters_are_refused_naming_what_exists() -> None:
    with pytest.raises(InvalidFault, match="k2 chaos list"):
        kind("earthquake")
    with pytest.raises(InvalidFault, match=r"unknown parameter.*magnitude"):
        kind("service_failure").build("kafka", 5, magnitude=9)
    with pytest.raises(InvalidFault, match="expected a int"):
        next(p for p in kind("resource_limit").params if p.name == "cpu_quota").parse("lots")


def test_support_follows_each_backends_declared_capabilities() -> None:
    assert support("service_failure", "process").variants == {"stop": True, "kill": True, "pause": True}
    assert not support("latency", "process").any and "fault-proxy" in support("latency", "process").note
    assert support("latency", "proxy").any and support("disk_fill", "disk").any
    docker = support("reset_peer", "docker")
    assert not docker.any and "fault proxy" in docker.note
    for backend in BACKENDS:
        assert support("service_failure", backend).installed == (builtin_class(backend) is not None)


def test_k2_chaos_list_prints_the_catalogue_and_its_json() -> None:
    shown = subprocess.run([sys.executable, "-m", "k2", "chaos", "list"], capture_output=True, text=True,
                           timeout=60, check=True, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})  # fmt: skip
    for name in CATALOGUE:
        assert name in shown.stdout
    data = json.loads(subprocess.run([sys.executable, "-m", "k2", "chaos", "list", "--json"], capture_output=True,
                                     text=True, timeout=60, check=True).stdout)  # fmt: skip
    assert set(data["kinds"]) == set(CATALOGUE) and data["backends"] == list(BACKENDS)
    assert data["kinds"]["service_failure"]["backends"]["process"]["variants"]["pause"] is True
