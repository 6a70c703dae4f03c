"""K2's faults on Kubernetes, through Chaos Mesh (v2.8.3 CRDs): translate, check, apply, read back, delete.

- `translate`: a K2 primitive request -> a Chaos Mesh object, or `Unsupported` saying why.
- `admission`: the admission webhook's rules the CRD schemas do not express, checked before any apply.
- `api`: the Kubernetes calls (official `kubernetes` client) and Chaos Mesh's status read back.
- `export`: manifests and Workflows for `kubectl apply` (`k2 chaos export --backend kubernetes`).
The chaos target is `k2.chaos.targets.kubernetes.KubernetesTarget`.

Not tested against a live cluster: the tests validate every object against the CRD schemas and the
webhook's rules, and drive the client path against an in-process fake API server.
"""

from __future__ import annotations

from k2.chaos.kubernetes.admission import admission_errors, check_admission
from k2.chaos.kubernetes.durations import format_go_duration, parse_go_duration
from k2.chaos.kubernetes.placement import Placement, new_run_id
from k2.chaos.kubernetes.translate import ChaosObject, ChaosRequest, translate

__all__ = [
    "ChaosObject",
    "ChaosRequest",
    "Placement",
    "admission_errors",
    "check_admission",
    "format_go_duration",
    "new_run_id",
    "parse_go_duration",
    "translate",
]
