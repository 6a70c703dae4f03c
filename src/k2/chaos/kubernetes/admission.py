"""The rules Chaos Mesh's admission webhook enforces that its CRD schemas do not express (v2.8.3).

The API server checks a manifest against the CRD's OpenAPI schema; Chaos Mesh's webhook then checks
more (`api/v1alpha1/*_webhook.go` upstream): every duration field parses with Go's
`time.ParseDuration` (empty allowed, except `timeOffset`); `value` is a positive integer for mode
`fixed` and 1..100 for the percent modes; container-kill names its containers; netem actions
(everything but partition) in direction `from` or `both` need a `target` and no `externalTargets`;
bandwidth rates carry a unit; correlations parse as floats; `percent` is 0..100; an IOChaos fault has
a non-zero errno. A Workflow needs its entry among its templates, unique DNS-1123 template names, a
deadline on Suspend, existing children on Serial/Parallel, and chaos templates that embed their
spec without a `duration` (the template's `deadline` is its length).

K2 runs these on every object before it is created or exported, so a refusal surfaces as a K2 error
naming the field, before a cluster is involved.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from k2.chaos.errors import InvalidFault
from k2.chaos.kubernetes.durations import parse_go_duration
from k2.chaos.kubernetes.placement import check_name

__all__ = ["admission_errors", "check_admission"]

_CHAOS_KINDS = {
    "PodChaos": "podChaos",
    "NetworkChaos": "networkChaos",
    "TimeChaos": "timeChaos",
    "IOChaos": "ioChaos",
    "StressChaos": "stressChaos",
    "HTTPChaos": "httpChaos",
    "DNSChaos": "dnsChaos",
    "JVMChaos": "jvmChaos",
    "KernelChaos": "kernelChaos",
    "BlockChaos": "blockChaos",
    "AWSChaos": "awsChaos",
    "GCPChaos": "gcpChaos",
    "AzureChaos": "azureChaos",
    "PhysicalMachineChaos": "physicalmachineChaos",
}
_RATE_UNITS = ("kbit", "mbit", "gbit", "tbit", "tbps", "gbps", "mbps", "kbps", "bps", "bit")
_GO_INT = re.compile(r"^[+-]?[0-9]+$")
_GO_UINT = re.compile(r"^[0-9]+$")
_FLOAT32_MAX = 3.4028234663852886e38


def check_admission(manifest: Mapping[str, Any]) -> None:
    """Raise `InvalidFault` listing every webhook rule `manifest` breaks."""
    errors = admission_errors(manifest)
    if errors:
        name = (manifest.get("metadata") or {}).get("name", "?")
        raise InvalidFault(
            f"{manifest.get('kind')} {name} would be refused by Chaos Mesh's admission webhook: " + "; ".join(errors)
        )


def admission_errors(manifest: Mapping[str, Any]) -> list[str]:
    """Every webhook rule `manifest` (a PodChaos, NetworkChaos, TimeChaos, IOChaos or Workflow) breaks."""
    kind, spec = manifest.get("kind"), manifest.get("spec")
    if not isinstance(spec, Mapping):
        return ["spec: required"]
    if kind == "Workflow":
        return _workflow(spec)
    return _chaos(str(kind), spec, "spec")


def _duration(value: Any, path: str, errors: list[str], *, allow_empty: bool = True) -> None:
    if value is None or (allow_empty and value == ""):
        return
    try:
        parse_go_duration(value)
    except InvalidFault as exc:
        errors.append(f"{path}: {exc}")


def _go_atoi(value: str) -> int | None:
    """strconv.Atoi: optional sign, decimal digits, nothing else (no spaces, no underscores)."""
    return int(value) if isinstance(value, str) and _GO_INT.match(value) and abs(int(value)) < 2**63 else None


def _go_float(value: str) -> bool:
    """strconv.ParseFloat(value, 32) succeeds (decimal forms and inf/nan; the rare hex forms aside)."""
    if not isinstance(value, str) or not value or value != value.strip() or "_" in value:
        return False
    try:
        number = float(value)
    except ValueError:
        return False
    return math.isnan(number) or math.isinf(number) or abs(number) <= _FLOAT32_MAX


def _selector(container: Mapping[str, Any], path: str, errors: list[str]) -> None:
    mode, value = container.get("mode"), container.get("value", "")
    if mode == "fixed":
        number = _go_atoi(value)
        if number is None:
            errors.append(f"{path}.value: {value!r} is not an integer (required with mode fixed)")
        elif number <= 0:
            errors.append(f"{path}.value: must be greater than 0 with mode fixed")
    elif mode in ("fixed-percent", "random-max-percent"):
        number = _go_atoi(value)
        if number is None:
            errors.append(f"{path}.value: {value!r} is not an integer (required with mode {mode})")
        elif not 0 < number <= 100:
            errors.append(f"{path}.value: {number} is invalid, must be (0,100] with mode {mode}")


def _chaos(kind: str, spec: Mapping[str, Any], path: str) -> list[str]:
    errors: list[str] = []
    _selector(spec, path, errors)
    _duration(spec.get("duration"), f"{path}.duration", errors)
    if kind == "PodChaos":
        if spec.get("action") == "container-kill" and not spec.get("containerNames"):
            errors.append(f"{path}.containerNames: the name of container is required on container-kill action")
    elif kind == "NetworkChaos":
        _network(spec, path, errors)
    elif kind == "TimeChaos":
        _duration(spec.get("timeOffset", ""), f"{path}.timeOffset", errors, allow_empty=False)
    elif kind == "IOChaos":
        _duration(spec.get("delay"), f"{path}.delay", errors)
        percent = spec.get("percent")
        if isinstance(percent, int) and not 0 <= percent <= 100:
            errors.append(f"{path}.percent: percent field should be in 0-100")
        if spec.get("action") == "fault" and not spec.get("errno"):
            errors.append(f"{path}.errno: action fault: errno 0 is not supported")
    return errors


def _network(spec: Mapping[str, Any], path: str, errors: list[str]) -> None:
    target = spec.get("target")
    if isinstance(target, Mapping):
        _selector(target, f"{path}.target", errors)
    delay = spec.get("delay")
    if isinstance(delay, Mapping):
        _duration(delay.get("latency"), f"{path}.delay.latency", errors)
        _duration(delay.get("jitter"), f"{path}.delay.jitter", errors)
    for name in ("delay", "loss", "duplicate", "corrupt"):
        section = spec.get(name)
        correlation = section.get("correlation") if isinstance(section, Mapping) else None
        if correlation not in (None, "") and not _go_float(correlation):
            errors.append(f"{path}.{name}.correlation: {correlation!r} is not a float")
    for name in ("bandwidth", "rate"):
        section = spec.get(name)
        if isinstance(section, Mapping) and not _rate_ok(section.get("rate")):
            errors.append(f"{path}.{name}.rate: {section.get('rate')!r} needs a number and a unit such as '1mbps'")
    if spec.get("action") == "partition":
        return  # the webhook checks nothing else for partitions
    direction = spec.get("direction") or "to"
    if direction in ("from", "both"):
        if spec.get("externalTargets") is not None:
            errors.append(f"{path}.direction: external targets cannot be used with `from` and `both` in netem actions")
        if target is None:
            errors.append(f"{path}.direction: `from` and `both` cannot be used when target is empty in netem actions")


def _rate_ok(rate: Any) -> bool:
    if not isinstance(rate, str):
        return False
    text = rate.strip().lower()
    for unit in _RATE_UNITS:
        if text.endswith(unit):
            number = text[: -len(unit)].strip()
            return bool(_GO_UINT.match(number)) and int(number) < 2**64
    return False


def _workflow(spec: Mapping[str, Any]) -> list[str]:
    errors: list[str] = []
    templates = spec.get("templates") or []
    names = [t.get("name", "") for t in templates if isinstance(t, Mapping)]
    entry = spec.get("entry", "")
    if not entry:
        errors.append("spec.entry: the entry of workflow is required")
    if entry not in names:
        errors.append(f"spec.entry: can not find a template with name {entry!r}")
    if not templates:
        return [*errors, "spec.templates: templates in workflow could not be empty"]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        errors.append(f"spec.templates: template name must be unique, duplicated names: {duplicated}")
    for i, template in enumerate(templates):
        errors.extend(_template(template, f"spec.templates[{i}]", names))
    return errors


def _template(template: Mapping[str, Any], path: str, names: list[str]) -> list[str]:
    errors: list[str] = []
    try:
        check_name(template.get("name"), f"{path}.name", subdomain=True)
    except InvalidFault as exc:
        errors.append(str(exc))
    kind = template.get("templateType")
    embedded = [field for field in _CHAOS_KINDS.values() if field in template]
    _duration(template.get("deadline"), f"{path}.deadline", errors)  # parsed by the workflow controller
    if kind == "Suspend":
        if not template.get("deadline"):
            errors.append(f"{path}.deadline: deadline in template with type Suspend could not be empty")
    elif kind in ("Serial", "Parallel"):
        errors.extend(
            f"{path}.children: can not find a template with name {child!r}"
            for child in template.get("children") or []
            if child not in names
        )
    elif kind in _CHAOS_KINDS:
        field = _CHAOS_KINDS[kind]
        inner = template.get(field)
        if not isinstance(inner, Mapping):
            return [*errors, f"{path}.{field}: missing chaos spec {kind}"]
        if inner.get("duration"):
            errors.append(f"{path}: should not define duration in chaos when using Workflow, use deadline instead")
        errors.extend(_chaos(kind, inner, f"{path}.{field}"))
        embedded.remove(field)
    else:
        errors.append(f"{path}.templateType: unrecognized template type: {kind!r}")
    if kind not in ("Serial", "Parallel") and template.get("children"):
        errors.append(f"{path}: this template should not contain children")
    errors.extend(f"{path}: this template should not contain {field}" for field in embedded)
    return errors
