"""Target backends and the registry that rebuilds a target from its `describe()` dict.

Backends register a factory under their `kind`; the journal and the watchdog only ever go through
`target_from_description`, so nothing outside this registry switches on a kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from k2.chaos.effects import Effect
from k2.chaos.errors import InvalidFault
from k2.chaos.targets.base import CPU_PERIOD_US, LimitValues, Target
from k2.chaos.targets.capabilities import (
    INVERSES,
    PROTOCOLS,
    Capability,
    Clock,
    Disk,
    Freeze,
    Lifecycle,
    Limits,
    Network,
    Probe,
)

__all__ = [
    "BUILTIN",
    "CPU_PERIOD_US",
    "INVERSES",
    "PROTOCOLS",
    "Capability",
    "Clock",
    "Disk",
    "Effect",
    "Freeze",
    "Lifecycle",
    "LimitValues",
    "Limits",
    "Network",
    "Probe",
    "Target",
    "builtin_class",
    "register_target",
    "target_from_description",
]

Factory = Callable[[Mapping[str, Any]], Target]

_FACTORIES: dict[str, Factory] = {}
# Backends shipped with K2, imported on first use so a recovery process loads only what it needs.
BUILTIN: dict[str, tuple[str, str]] = {
    "process": ("k2.chaos.targets.process", "ProcessTarget"),
    "proxy": ("k2.chaos.targets.proxy", "ProxyTarget"),
    "disk": ("k2.chaos.targets.disk", "DiskTarget"),
    "clock": ("k2.chaos.targets.clock", "ClockTarget"),
    "docker": ("k2.chaos.targets.docker", "DockerTarget"),
    "kubernetes": ("k2.chaos.targets.kubernetes", "KubernetesTarget"),
}


def register_target(kind: str, factory: Factory) -> None:
    """Make `target_from_description` rebuild descriptions of `kind` with `factory`."""
    _FACTORIES[kind] = factory


def builtin_class(kind: str) -> type[Target] | None:
    """The class of a backend shipped with K2 (imported now), or None when its module is not there."""
    module, cls = BUILTIN[kind]
    try:
        found: type[Target] = getattr(importlib.import_module(module), cls)
    except ImportError:
        return None
    return found


def target_from_description(desc: Mapping[str, Any]) -> Target:
    """Rebuild a target from its `describe()` output (possibly written by another process)."""
    kind = desc.get("kind")
    if not isinstance(kind, str):
        raise InvalidFault(f"target description without a kind: {dict(desc)!r}")
    if kind not in _FACTORIES and kind in BUILTIN:
        module, cls = BUILTIN[kind]
        register_target(kind, getattr(importlib.import_module(module), cls).from_description)
    factory = _FACTORIES.get(kind)
    if factory is None:
        raise InvalidFault(
            f"no target backend registered for kind {kind!r} (known: {sorted(_FACTORIES | BUILTIN)}); "
            "import the module that registers it before recovering"
        )
    return factory(desc)
