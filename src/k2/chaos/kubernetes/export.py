"""`k2 chaos export --backend kubernetes SCENARIO`: Chaos Mesh manifests a user can `kubectl apply`.

SCENARIO is a fault-list file (YAML or JSON), not a shipped scenario's name: a shipped scenario is
Python whose faults depend on what its body does, and its fault records do not carry every parameter
(a service failure's mode is not among them), so its fault list cannot be known without running it
on a stack. A file states the faults, their services' placement and their order explicitly::

    name: kafka-outage                 # the Workflow's name (DNS-1123)
    namespace: shop                    # where the services' pods run
    services:
      kafka: {selector: {app.kubernetes.io/name: kafka}, container: broker, volume_path: /var/lib/kafka,
              clients: {producer: {app: producer}}}
    faults:                            # in order; each with a duration; after_seconds: a pause before it
      - {kind: service_failure, service: kafka, mode: stop, duration_seconds: 30}
      - {kind: network_partition, service: kafka, mode: blackhole, direction: upstream, clients: [producer],
         duration_seconds: 20, after_seconds: 10}

Each fault is built with K2's own fault classes (the same validation as the Python API), then
translated. One fault gives one object with its `duration`; several give one Workflow: a Serial node
running each fault for its duration (the template's `deadline`), with Suspend nodes for the pauses.
A fault Chaos Mesh cannot express fails the export, listing every such fault and why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from k2.chaos.errors import InvalidFault, Unsupported
from k2.chaos.kubernetes.admission import check_admission
from k2.chaos.kubernetes.placement import LABEL_MANAGED_BY, LABEL_RUN, MANAGED_BY, Placement, check_name, new_run_id
from k2.chaos.kubernetes.translate import API_VERSION, ChaosObject, ChaosRequest, translate

__all__ = ["export_manifests", "load_scenario", "render_yaml"]

_TOP = {"name", "namespace", "services", "faults"}
_SCENARIO_LABEL = "k2.chaos/scenario"


def load_scenario(path: Path) -> dict[str, Any]:
    """Read a fault-list file (.json, else YAML)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidFault(f"scenario file {path}: {exc.strerror or exc}; give a readable fault-list file") from exc
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidFault(f"scenario file {path} is not valid JSON: {exc}") from None
    else:
        try:
            import yaml
        except ImportError as exc:
            raise InvalidFault(
                "reading YAML needs PyYAML: pip install 'k2-chaos[kubernetes]', or give a .json file"
            ) from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidFault(f"scenario file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise InvalidFault(f"scenario file {path}: expected a mapping with {sorted(_TOP)}")
    return dict(data)


def export_manifests(scenario: Mapping[str, Any], *, run_id: str | None = None) -> list[dict[str, Any]]:
    """The objects to apply for `scenario`: one chaos object, or one Workflow for several faults."""
    extra = sorted(set(scenario) - _TOP)
    if extra:
        raise InvalidFault(f"scenario: unknown field(s) {extra}; known: {sorted(_TOP)}")
    name = check_name(scenario.get("name"), "scenario name")
    namespace = scenario.get("namespace")
    services = scenario.get("services")
    if not isinstance(services, Mapping) or not services:
        raise InvalidFault("scenario: 'services' must map each service name to its placement (selector, ...)")
    placements = {
        service: Placement.from_dict({"service": service, "namespace": namespace, **dict(spec or {})})
        for service, spec in services.items()
    }
    faults = scenario.get("faults")
    if not isinstance(faults, list) or not faults:
        raise InvalidFault("scenario: 'faults' must be a non-empty list")
    run_id = run_id or new_run_id()
    objects, gaps, problems = [], [], []
    for index, fault in enumerate(faults, 1):
        try:
            chaos, gap = _translate_one(fault, placements, run_id)
            objects.append(chaos)
            gaps.append(gap)
        except Unsupported as exc:
            problems.append(f"fault {index}: {exc}")
    if problems:
        raise Unsupported(f"scenario {name!r} has fault(s) Chaos Mesh cannot express: " + " | ".join(problems))
    if len(objects) == 1 and not gaps[0]:
        manifests = [objects[0].manifest()]
    else:
        manifests = [_workflow(name, next(iter(placements.values())).namespace, objects, gaps, run_id)]
    for manifest in manifests:
        check_admission(manifest)
    return manifests


def _translate_one(fault: object, placements: Mapping[str, Placement], run_id: str) -> tuple[ChaosObject, float | None]:
    from k2.chaos.faults.catalogue import CATALOGUE

    if not isinstance(fault, Mapping):
        raise InvalidFault(f"each fault must be a mapping with kind and service, got {fault!r}")
    spec = dict(fault)
    kind, service, gap = spec.pop("kind", None), spec.pop("service", None), spec.pop("after_seconds", None)
    if service not in placements:
        raise InvalidFault(f"fault {kind!r}: service {service!r} is not under 'services' ({sorted(placements)})")
    if gap is not None and (isinstance(gap, bool) or not isinstance(gap, int | float) or gap <= 0):
        raise InvalidFault(f"fault {kind!r} on {service}: after_seconds={gap!r} must be a positive number")
    if kind == "clock_skew":  # no K2 fault class yet: the translator's own parameters
        duration = spec.pop("duration_seconds", None)
        request = ChaosRequest("skew_clock", spec, service, duration)
    else:
        if kind not in CATALOGUE:
            raise InvalidFault(f"unknown fault kind {kind!r}; known: {sorted([*CATALOGUE, 'clock_skew'])}")
        duration = spec.pop("duration_seconds", None)
        # The same validated spec as the Python API and `k2 chaos inject` build (`k2 chaos list` shows them).
        built = CATALOGUE[str(kind)].build(str(service), duration, **spec)
        request = ChaosRequest(built.primitive, built.arguments(), service, built.duration_s)
    if request.duration_s is None:
        raise InvalidFault(f"fault {kind!r} on {service}: give duration_seconds (an exported fault must end)")
    return translate(request, placements[service], run_id), gap


def _workflow(
    name: str, namespace: str, objects: list[ChaosObject], gaps: list[float | None], run_id: str
) -> dict[str, Any]:
    from k2.chaos.kubernetes.durations import format_go_duration

    templates: list[dict[str, Any]] = []
    children = []
    for index, (chaos, gap) in enumerate(zip(objects, gaps, strict=True), 1):
        if gap:
            children.append(f"pause-{index}")
            templates.append({"name": f"pause-{index}", "templateType": "Suspend", "deadline": format_go_duration(gap)})
        step = f"fault-{index}-{chaos.primitive.replace('_', '-')}-{chaos.labels['k2.chaos/service']}"[:63].rstrip("-")
        children.append(step)
        assert chaos.duration_s is not None
        templates.append({"name": step, "templateType": chaos.kind, "deadline": format_go_duration(chaos.duration_s),
                          chaos.template_field: dict(chaos.spec)})  # fmt: skip
    entry = f"k2-{name}"[:63].rstrip("-")
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": {
            "name": entry,
            "namespace": namespace,
            "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_RUN: run_id, _SCENARIO_LABEL: name},
        },
        "spec": {
            "entry": entry,
            "templates": [{"name": entry, "templateType": "Serial", "children": children}, *templates],
        },
    }


def render_yaml(manifests: list[dict[str, Any]], source: str) -> str:
    """Multi-document YAML with a header saying what it is and what it is not."""
    import yaml

    header = (
        f"# Chaos Mesh (v2.8.3 CRDs) manifests generated by `k2 chaos export` from {source}.\n"
        "# K2 checks them against the CRD schemas (strict) and the admission webhook's rules; they have\n"
        "# not been tested against a live cluster. Apply: kubectl apply -f FILE; stop early: kubectl delete -f FILE\n"
    )
    body = "---\n".join(yaml.safe_dump(m, sort_keys=False, default_flow_style=False) for m in manifests)
    return header + "---\n" + body
