"""The docker backend's decisions that need no engine: which containers may be touched, how limits
are restored, what a network snapshot keeps, and why shaping is refused. Runs without Docker."""

from __future__ import annotations

import pytest

from k2.chaos.errors import InvalidFault, UnsafeTarget
from k2.chaos.targets.docker_engine import allowed, check_allowed
from k2.chaos.targets.docker_extras import shaping_obstacle
from k2.chaos.targets.docker_limits import UNLIMITED_MEM, effective, limit_update, restore_update
from k2.chaos.targets.docker_net import published_addresses, rejoin_mismatches, snapshot

PROJECT = "com.docker.compose.project"


def test_only_the_configured_project_or_the_chaos_label_is_allowed() -> None:
    assert allowed({PROJECT: "k2"}, "k2")
    assert allowed({PROJECT: "k2_stack"}, "K2_Stack")  # Compose v1 lower-cases project names
    assert not allowed({PROJECT: "prod"}, "k2")
    assert not allowed({}, None)
    assert allowed({"k2.chaos": "true"}, None) and allowed({"k2.chaos": "True", PROJECT: "other"}, "k2")
    with pytest.raises(UnsafeTarget, match="'prod'.*'k2'.*k2.chaos=true"):
        check_allowed({"Id": "a" * 64, "Name": "/prod-kafka-1", "Config": {"Labels": {PROJECT: "prod"}}}, "k2")


def test_unlimited_originals_come_back_in_a_form_docker_accepts() -> None:
    unlimited = {"CpuQuota": 0, "CpuPeriod": 0, "Memory": 0, "MemorySwap": 0, "NanoCpus": 0}
    limited = {"CpuQuota": 20000, "CpuPeriod": 0, "Memory": 256 << 20, "MemorySwap": 256 << 20, "NanoCpus": 0}
    update = restore_update(limited, unlimited)
    assert update == {"cpu_quota": -1, "mem_limit": UNLIMITED_MEM, "memswap_limit": UNLIMITED_MEM}
    restored = {"CpuQuota": -1, "CpuPeriod": 0, "Memory": UNLIMITED_MEM, "MemorySwap": UNLIMITED_MEM, "NanoCpus": 0}
    assert effective(restored) == effective(unlimited) and restore_update(restored, unlimited) == {}


def test_existing_limits_come_back_exactly() -> None:
    original = {"CpuQuota": 50000, "CpuPeriod": 100000, "Memory": 512 << 20, "MemorySwap": 1 << 30, "NanoCpus": 0}
    limited = {**original, "CpuQuota": 20000, "Memory": 256 << 20, "MemorySwap": 256 << 20}
    assert restore_update(limited, original) == {"cpu_quota": 50000, "mem_limit": 512 << 20, "memswap_limit": 1 << 30}


def test_limit_update_defaults_swap_to_memory_and_validates_it() -> None:
    none = {"CpuQuota": 0, "CpuPeriod": 0, "Memory": 0, "MemorySwap": 0, "NanoCpus": 0}
    assert limit_update(none, 50000, 100000, 1 << 29, None) == {
        "cpu_quota": 50000,
        "mem_limit": 1 << 29,
        "memswap_limit": 1 << 29,
    }
    assert limit_update(none, 50000, 50000, None, None) == {"cpu_quota": 50000, "cpu_period": 50000}
    with pytest.raises(InvalidFault, match="memswap_limit"):
        limit_update(none, None, 100000, 1 << 29, "256m")
    with pytest.raises(InvalidFault, match="needs mem_limit"):
        limit_update(none, 50000, 100000, None, "1g")


def attrs_with(networks: dict, ports: dict | None = None) -> dict:
    return {"Id": "abcdef1234567890" * 4, "NetworkSettings": {"Networks": networks, "Ports": ports or {}}}


def test_snapshot_drops_the_short_id_alias_and_rejoin_check_reports_differences() -> None:
    nets = {"k2_default": {"NetworkID": "n1", "Aliases": ["kafka", "abcdef123456"], "IPAddress": "172.18.0.3",
                           "IPAMConfig": None, "MacAddress": "02:42:ac:12:00:03"}}  # fmt: skip
    taken = snapshot(attrs_with(nets))
    assert taken[0]["aliases"] == ["kafka"] and taken[0]["ipv4"] == "172.18.0.3" and taken[0]["ipv4_pinned"] is None
    moved = {"k2_default": {**nets["k2_default"], "IPAddress": "172.18.0.4", "Aliases": ["abcdef123456"]}}
    wrong = rejoin_mismatches(attrs_with(moved), taken)
    assert (
        wrong["missing"] == [] and wrong["aliases"] and wrong["addresses"] == ["k2_default: 172.18.0.3 -> 172.18.0.4"]
    )
    assert rejoin_mismatches(attrs_with({}), taken)["missing"] == ["k2_default"]
    ports = {"9092/tcp": [{"HostIp": "0.0.0.0", "HostPort": "39092"}], "53/udp": [{"HostIp": "", "HostPort": "53"}]}
    assert published_addresses(attrs_with(nets, ports)) == [("127.0.0.1", 39092)]


def test_shaping_is_refused_with_the_reason_and_the_proxy_route() -> None:
    host: dict = {"CapAdd": None, "Privileged": False}
    assert "fault-proxy" in (shaping_obstacle("kafka", "timeout", "downstream", 1.0, None, host, False) or "")
    assert "stream='upstream'" in (shaping_obstacle("kafka", "latency", "upstream", 1.0, None, host, False) or "")
    assert "NET_ADMIN" in (shaping_obstacle("kafka", "bandwidth", "downstream", 1.0, None, host, False) or "")
    assert shaping_obstacle("kafka", "bandwidth", "downstream", 1.0, None, {"CapAdd": ["NET_ADMIN"]}, False) is None
