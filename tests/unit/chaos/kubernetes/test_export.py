"""`k2 chaos export --backend kubernetes SCENARIO`: a fault-list file -> manifests that pass the v2.8.3 CRD
schemas (strict) and the webhook's rules; a Workflow for several faults. Not tested against a live cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.unit.chaos.kubernetes.crds import schema_errors

from k2.chaos.errors import InvalidFault, UnsafeTarget, Unsupported
from k2.chaos.kubernetes import admission_errors
from k2.chaos.kubernetes.export import export_manifests, load_scenario

EXAMPLE = Path(__file__).resolve().parents[4] / "examples" / "chaos-mesh" / "kafka-outage.yaml"
SERVICES = {"kafka": {"selector": {"app": "kafka"}, "container": "broker"}}


def scenario(*faults: dict[str, Any]) -> dict[str, Any]:
    return {"name": "t", "namespace": "shop", "services": SERVICES, "faults": list(faults)}


def valid(manifest: dict[str, Any]) -> dict[str, Any]:
    assert schema_errors(manifest) == []
    assert admission_errors(manifest) == []
    return manifest


def test_the_shipped_example_exports_as_one_valid_workflow() -> None:
    [workflow] = export_manifests(load_scenario(EXAMPLE))
    valid(workflow)
    templates = {t["name"]: t for t in workflow["spec"]["templates"]}
    entry = templates[workflow["spec"]["entry"]]
    assert entry["templateType"] == "Serial"
    steps = [templates[child] for child in entry["children"]]
    kinds = [(s["templateType"], s["deadline"]) for s in steps]
    assert kinds == [("PodChaos", "30s"), ("Suspend", "10s"), ("NetworkChaos", "20s"), ("NetworkChaos", "30s"),
                     ("NetworkChaos", "30s"), ("Suspend", "5s"), ("IOChaos", "20s"), ("TimeChaos", "30s"),
                     ("PodChaos", "10s")]  # fmt: skip
    assert all("duration" not in s.get(field, {}) for s in steps for field in ("podChaos", "networkChaos"))
    assert steps[-1]["podChaos"]["containerNames"] == ["postgres"]


def test_one_fault_is_one_object_with_its_duration() -> None:
    [obj] = export_manifests(scenario({"kind": "service_failure", "service": "kafka", "mode": "kill",
                                       "duration_seconds": 5}))  # fmt: skip
    valid(obj)
    assert obj["kind"] == "PodChaos" and obj["spec"]["action"] == "container-kill"
    [obj] = export_manifests(scenario({"kind": "latency", "service": "kafka", "latency": 20, "duration_seconds": 1.5}))
    assert valid(obj)["spec"]["duration"] == "1500ms"


def test_unsupported_faults_fail_the_export_listing_each() -> None:
    with pytest.raises(Unsupported) as raised:
        export_manifests(scenario(
            {"kind": "service_failure", "service": "kafka", "mode": "pause", "duration_seconds": 5},
            {"kind": "latency", "service": "kafka", "latency": 20, "duration_seconds": 5},
            {"kind": "reset_peer", "service": "kafka", "duration_seconds": 5},
        ))  # fmt: skip
    assert "fault 1" in str(raised.value) and "fault 3" in str(raised.value) and "fault 2" not in str(raised.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"faults": [{"kind": "latency", "service": "kafka", "latency": 5}]}, "duration_seconds"),
        ({"faults": [{"kind": "service_failure", "service": "db", "duration_seconds": 5}]}, "not under 'services'"),
        ({"faults": [{"kind": "meteor", "service": "kafka", "duration_seconds": 5}]}, "unknown fault kind"),
        ({"faults": [{"kind": "service_failure", "service": "kafka", "duration_seconds": 5, "moed": "x"}]}, "moed"),
        ({"faults": []}, "non-empty"),
        ({"namespace": "kube-system"}, "belongs to the cluster"),
        ({"services": {"kafka": {"selector": {}}}}, "non-empty label selector"),
        ({"name": "Bad Name"}, "DNS-1123"),
        ({"extra": 1}, "unknown field"),
    ],
)
def test_bad_scenarios_are_refused_naming_the_problem(change: dict[str, Any], message: str) -> None:
    bad = {**scenario({"kind": "service_failure", "service": "kafka", "duration_seconds": 5}), **change}
    with pytest.raises((InvalidFault, UnsafeTarget, Unsupported), match=message):
        export_manifests(bad)


def k2(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed `k2` console script, beside this interpreter."""
    script = Path(sys.executable).with_name("k2")
    done = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=60)
    done.stderr = " ".join(done.stderr.split())  # the terminal wraps long messages
    return done


def test_cli_writes_apply_ready_yaml_and_refuses_bad_files_with_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "chaos.yaml"
    done = k2("chaos", "export", "--backend", "kubernetes", str(EXAMPLE), "-o", str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "not been tested against a live cluster" in text
    [workflow] = [d for d in yaml.safe_load_all(text) if d]
    valid(workflow)
    single = tmp_path / "one.json"
    single.write_text(json.dumps(scenario({"kind": "disk_fill", "service": "kafka", "duration_seconds": 3})))
    done = k2("chaos", "export", str(single))
    assert done.returncode == 2 and "volume_path" in done.stderr and "Traceback" not in done.stderr
    garbage = tmp_path / "bad.yaml"
    garbage.write_text("faults: [unclosed")
    done = k2("chaos", "export", str(garbage))
    assert done.returncode == 2 and "not valid YAML" in done.stderr and "Traceback" not in done.stderr
    done = k2("chaos", "export", str(tmp_path / "missing.yaml"))
    assert done.returncode == 2 and "readable" in done.stderr
