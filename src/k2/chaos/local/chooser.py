"""Which mechanism pauses, CPU-caps and memory-caps a local process tree on this host, and the switch.

Per capability, the first that this host and user allow, in the order of the policy:

| policy (K2_CGROUP)  | freeze                   | cpu                          | memory                     |
|---------------------|--------------------------|------------------------------|----------------------------|
| auto (default)      | v1 freezer, v2, sigstop  | v1 cpu, v2 cpu.max, duty-cycle | v1 memory, v2 memory.max, rlimit |
| v2                  | v2, sigstop              | v2 cpu.max, duty-cycle       | v2 memory.max, rlimit      |
| none                | sigstop                  | duty-cycle                   | rlimit                     |
| v1                  | v1 freezer (else Unsupported) | v1 cpu                  | v1 memory                  |

The choice is made once per target while its tree runs, recorded in its description (with what ruled
out the preferred mechanisms), and reused by whoever restores it: a recovery in another shell, with
another K2_CGROUP, still undoes a fault the way it was made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from k2.chaos.cgroups_v1 import CPU as CPU_CONTROLLER
from k2.chaos.cgroups_v1 import FREEZER
from k2.chaos.cgroups_v1 import MEMORY as MEMORY_CONTROLLER
from k2.chaos.cgroups_v2 import Unified
from k2.chaos.errors import InvalidFault
from k2.chaos.local import v1, v2
from k2.chaos.local.common import CGROUP_V1, CGROUP_V2, CPU, DUTY_CYCLE, FREEZE, MEMORY, RLIMIT, SIGSTOP

__all__ = ["ENV", "FALLBACK", "POLICIES", "Choice", "choose", "policy_from_env"]

ENV = "K2_CGROUP"
FALLBACK = "fallback"
POLICIES: dict[str, tuple[str, ...]] = {
    "auto": (CGROUP_V1, CGROUP_V2, FALLBACK),
    "v2": (CGROUP_V2, FALLBACK),
    "none": (FALLBACK,),
    "v1": (CGROUP_V1,),
}
FALLBACKS = {FREEZE: SIGSTOP, CPU: DUTY_CYCLE, MEMORY: RLIMIT}
_V1_CONTROLLER = {FREEZE: FREEZER, CPU: CPU_CONTROLLER, MEMORY: MEMORY_CONTROLLER}


def policy_from_env(env: Mapping[str, str] | None = None) -> str:
    """The policy K2_CGROUP names (auto when unset); InvalidFault for anything else."""
    value = (os.environ if env is None else env).get(ENV, "").strip().lower() or "auto"
    if value not in POLICIES:
        raise InvalidFault(f"{ENV}={value!r} is not a policy: use one of {', '.join(POLICIES)} (unset means auto)")
    return value


@dataclass(frozen=True)
class Choice:
    mechanism: str
    why: str = ""  # what ruled out the mechanisms the policy prefers ("" when the first was usable)


def choose(
    capability: str, policy: str, *, v1_home: Mapping[str, str], v2_home: str | None, unified: Unified | None
) -> Choice:
    """The mechanism for `capability` (freeze, cpu, memory) of a tree whose groups are `v1_home` / `v2_home`."""
    reasons = [] if policy == "auto" else [f"{ENV}={policy}"]
    for candidate in POLICIES[policy]:
        if candidate == FALLBACK:
            return Choice(FALLBACKS[capability], "; ".join(reasons))
        if candidate == CGROUP_V1:
            controller = _V1_CONTROLLER[capability]
            why = v1.unusable(controller, v1_home.get(controller))
        else:
            why = v2.unusable(unified, v2_home, None if capability == FREEZE else capability)
        if why is None:
            return Choice(candidate, "; ".join(reasons))
        reasons.append(why)
    # Policy v1 where v1 cannot: keep it, and let the mechanism say why (Unsupported, with the remedy).
    return Choice(CGROUP_V1, "; ".join(reasons))
