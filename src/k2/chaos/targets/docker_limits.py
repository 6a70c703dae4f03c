"""CPU and memory limits of a container through the engine's live update, and their exact undo.

Docker's update API ignores zero values, so "no limit" cannot be written back as the 0 the
container was created with: an unlimited CPU quota is restored as -1 and unlimited memory as the
kernel's own "no limit" value (cgroup v1 reads it back as 9223372036854771712 with 4 KiB pages).
Both mean exactly the same to the kernel and to Docker, and on an engine on this machine the
restore is verified against the cgroup files as they read before the fault.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from k2.chaos.errors import InvalidFault
from k2.chaos.targets.base import CPU_PERIOD_US
from k2.chaos.units import parse_size

__all__ = [
    "KEYS",
    "PAGE",
    "UNLIMITED_MEM",
    "cgroup_mismatch",
    "effective",
    "limit_update",
    "limits_mismatch",
    "resources",
    "restore_update",
]

KEYS = ("CpuQuota", "CpuPeriod", "Memory", "MemorySwap", "NanoCpus")
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
UNLIMITED_MEM = (sys.maxsize // PAGE) * PAGE
_HUGE = 1 << 62  # anything this large is "no limit"


def resources(attrs: Mapping[str, Any]) -> dict[str, int]:
    """The limit fields of HostConfig, as ints."""
    host = attrs.get("HostConfig") or {}
    return {key: int(host.get(key) or 0) for key in KEYS}


def effective(res: Mapping[str, int]) -> dict[str, int]:
    """Normalize Docker's several spellings of "no limit": quota -1, period 100000, memory 0, swap -1."""
    memory = res["Memory"] if 0 < res["Memory"] < _HUGE else 0
    swap = res["MemorySwap"]
    if swap >= _HUGE or swap < 0 or (memory == 0 and swap == 0):
        swap = -1
    return {
        "CpuQuota": res["CpuQuota"] if res["CpuQuota"] > 0 else -1,
        "CpuPeriod": res["CpuPeriod"] or CPU_PERIOD_US,
        "Memory": memory,
        "MemorySwap": swap,
        "NanoCpus": res["NanoCpus"],
    }


def limit_update(
    current: Mapping[str, int], cpu_quota: int | None, cpu_period: int, mem: int | None, memswap: object
) -> dict[str, int]:
    """The update call's arguments for the requested limits; memswap defaults to `mem` (no swap on
    top, so the memory limit means what it says)."""
    update: dict[str, int] = {}
    if cpu_quota is not None:
        update["cpu_quota"] = cpu_quota
        if effective(current)["CpuPeriod"] != cpu_period:
            update["cpu_period"] = cpu_period
    if mem is not None:
        swap = mem
        if memswap is not None:
            swap = -1 if memswap in (-1, "-1") else parse_size(memswap, what="memswap_limit")
            if swap != -1 and swap < mem:
                raise InvalidFault(
                    f"memswap_limit={memswap!r} is below mem_limit: it is memory plus swap, so give at least "
                    "mem_limit (equal = no swap), or -1 for unlimited swap"
                )
        update["mem_limit"] = mem
        update["memswap_limit"] = swap
    elif memswap is not None:
        raise InvalidFault("memswap_limit needs mem_limit: it is the memory-plus-swap total")
    return update


def restore_update(current: Mapping[str, int], original: Mapping[str, int]) -> dict[str, int]:
    """The update call's arguments that bring `current` back to `original` ({} if already there)."""
    now, then = effective(current), effective(original)
    update: dict[str, int] = {}
    if now["CpuQuota"] != then["CpuQuota"]:
        update["cpu_quota"] = then["CpuQuota"]
    if now["CpuPeriod"] != then["CpuPeriod"]:
        update["cpu_period"] = then["CpuPeriod"]
    if (now["Memory"], now["MemorySwap"]) != (then["Memory"], then["MemorySwap"]):
        if then["Memory"] == 0:
            # Both at once: the kernel refuses memory above memsw, and -1 is refused by the engine.
            update["mem_limit"] = update["memswap_limit"] = UNLIMITED_MEM
        else:
            update["mem_limit"] = then["Memory"]
            if original["MemorySwap"] != 0:
                update["memswap_limit"] = then["MemorySwap"]
    return update


def limits_mismatch(attrs: Mapping[str, Any], want: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """Fields of HostConfig that do not read back as requested by an update call: {field: (want, got)}."""
    got = resources(attrs)
    names = {"cpu_quota": "CpuQuota", "cpu_period": "CpuPeriod", "mem_limit": "Memory", "memswap_limit": "MemorySwap"}
    return {names[k]: (v, got[names[k]]) for k, v in want.items() if got[names[k]] != v}


def cgroup_mismatch(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, tuple[str, str | None]]:
    """cgroup files that do not read as they did before the fault."""
    return {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v}
