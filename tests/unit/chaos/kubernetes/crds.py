"""Chaos Mesh v2.8.3's CRD schemas, read from the shared reference copy, as strict validators.

The CRDs are reference data outside the repository (../shared/reference/chaos-mesh/crd-v2.8.3.yaml
next to the project, or $K2_CHAOS_MESH_CRDS). They are never copied into the repository, and a
missing file FAILS the tests that need it (no skip). A clean clone of a local checkout (CI's) finds it
beside its origin.

Strict means `kubectl apply --validate=strict`: a field the schema does not declare is an error, not
pruned. The OpenAPI v3 schemas are turned into JSON Schema (draft 4, whose boolean exclusiveMinimum
OpenAPI 3.0 shares): `additionalProperties: false` wherever properties are declared and unknown
fields are not preserved, `nullable` allows null, `x-kubernetes-int-or-string` allows both, and the
int32/int64 formats are range-checked. metadata is checked as ObjectMeta (known fields only).
"""

from __future__ import annotations

import copy
import functools
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

CRD_FILE = "crd-v2.8.3.yaml"
ENV = "K2_CHAOS_MESH_CRDS"
_REL = Path("shared/reference/chaos-mesh") / CRD_FILE
_METADATA_FIELDS = {
    "name",
    "generateName",
    "namespace",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
}


def crd_path() -> Path:
    """$K2_CHAOS_MESH_CRDS, else shared/reference/chaos-mesh/crd-v2.8.3.yaml in the nearest ancestor of the
    repository that has it (a clean clone in CI has shared/ beside it; a worktree may sit deeper)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    repo = Path(__file__).resolve().parents[4]
    for root in (repo, *_origin(repo)):
        for parent in (root, *root.parents):
            if (parent / _REL).is_file():
                return parent / _REL
    return repo.parent / _REL


def _origin(repo: Path) -> list[Path]:
    """A clean clone of a local checkout (how CI tests main) sits wherever CI put it; the checkout it came
    from still has shared/ beside it, so look beside the clone's origin too."""
    try:
        url = subprocess.run(
            ["git", "-C", str(repo), "config", "--get", "remote.origin.url"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    if not url or "://" in url or url.startswith("git@"):
        return []
    path = Path(url.removeprefix("file:"))
    return [path.resolve()] if path.is_absolute() and path.exists() else []


@functools.cache
def _crds() -> dict[str, dict[str, Any]]:
    path = crd_path()
    if not path.is_file():
        pytest.fail(
            f"Chaos Mesh CRDs not found at {path}: these tests validate K2's manifests against them. Lay the "
            f"shared reference data beside the repository (shared/reference/chaos-mesh/{CRD_FILE}) or set {ENV}",
            pytrace=False,
        )
    schemas = {}
    with path.open(encoding="utf-8") as handle:
        for doc in yaml.load_all(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            kind = doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                if version["name"] == "v1alpha1":
                    schemas[kind] = version["schema"]["openAPIV3Schema"]
    return schemas


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if k not in ("description", "default")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


_FORMATS = jsonschema.FormatChecker()


@_FORMATS.checks("int32")
def _int32(value: object) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@_FORMATS.checks("int64")
def _int64(value: object) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


@functools.cache
def validator(kind: str) -> jsonschema.Draft4Validator:
    schemas = _crds()
    if kind not in schemas:
        raise AssertionError(f"no CRD for kind {kind!r} in {crd_path()} (known: {sorted(schemas)})")
    schema = _strict(copy.deepcopy(schemas[kind]))
    schema["properties"]["metadata"] = {"type": "object"}  # checked as ObjectMeta below
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    return jsonschema.Draft4Validator(schema, format_checker=_FORMATS)


def schema_errors(manifest: Mapping[str, Any]) -> list[str]:
    """Every way `manifest` breaks its kind's CRD schema, strictly (unknown fields refused)."""
    kind = manifest.get("kind")
    if not isinstance(kind, str):
        return ["kind: required"]
    errors = [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator(kind).iter_errors(manifest)
    ]
    if manifest.get("apiVersion") != "chaos-mesh.org/v1alpha1":
        errors.append(f"apiVersion: {manifest.get('apiVersion')!r} is not chaos-mesh.org/v1alpha1")
    metadata = manifest.get("metadata")
    if isinstance(metadata, Mapping):
        errors += [f"metadata.{name}: unknown field" for name in sorted(set(metadata) - _METADATA_FIELDS)]
        for field in ("labels", "annotations"):
            values = metadata.get(field) or {}
            if not isinstance(values, Mapping) or not all(isinstance(v, str) for v in values.values()):
                errors.append(f"metadata.{field}: must map strings to strings")
    return errors


def crd_kinds() -> list[str]:
    return sorted(_crds())
