"""The few Kubernetes API calls K2 makes, through the official `kubernetes` client, with K2's errors.

create, get, list (by label) and delete (with the object's uid as a precondition, so an object
recreated under the same name by someone else is never deleted) of Chaos Mesh objects, each with a
request timeout; and `ChaosStatus`, Chaos Mesh's `status.experiment` read back as plain data.
Access is named, never embedded: a kubeconfig path and context (or the pod's service account), so
a journal that describes a Kubernetes target holds no credential.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from k2.chaos.errors import ChaosError, InvalidFault
from k2.chaos.kubernetes.translate import API_VERSION

__all__ = ["ChaosMeshApi", "ChaosStatus", "ClusterAccess", "KubernetesApiError", "Record"]

GROUP, VERSION = API_VERSION.split("/")


class KubernetesApiError(ChaosError):
    """The API server refused or could not be reached; `status` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0, *, missing_object: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.missing_object = missing_object  # a 404 for the object, not for its kind


@dataclass(frozen=True)
class ClusterAccess:
    """How to reach the API server: a kubeconfig (None: $KUBECONFIG or ~/.kube/config) and context, or
    in_cluster (the pod's service account)."""

    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False
    request_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.kubeconfig is not None and (not isinstance(self.kubeconfig, str) or not self.kubeconfig):
            raise InvalidFault(f"kubeconfig={self.kubeconfig!r} must be a path")
        if not (isinstance(self.request_timeout_s, int | float) and 0 < self.request_timeout_s <= 300):
            raise InvalidFault(f"request_timeout_s={self.request_timeout_s!r} must be within (0, 300] seconds")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kubeconfig": self.kubeconfig,
            "context": self.context,
            "in_cluster": self.in_cluster,
            "request_timeout_s": self.request_timeout_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterAccess:
        return cls(
            kubeconfig=data.get("kubeconfig"),
            context=data.get("context"),
            in_cluster=bool(data.get("in_cluster", False)),
            request_timeout_s=float(data.get("request_timeout_s", 10.0)),
        )

    def connect(self) -> ChaosMeshApi:
        try:
            from kubernetes import client, config
            from kubernetes.config.config_exception import ConfigException
        except ImportError as exc:
            raise ChaosError(
                "the Kubernetes backend needs the `kubernetes` client: pip install 'k2-chaos[kubernetes]'"
            ) from exc
        configuration = client.Configuration()
        try:
            if self.in_cluster:
                config.load_incluster_config(client_configuration=configuration)
            else:
                path = os.path.expanduser(self.kubeconfig) if self.kubeconfig else None
                config.load_kube_config(
                    config_file=path, context=self.context, client_configuration=configuration, persist_config=False
                )
        except (ConfigException, OSError, TypeError, ValueError) as exc:
            where = "the pod's service account" if self.in_cluster else f"kubeconfig {self.kubeconfig or '(default)'}"
            raise KubernetesApiError(
                f"cannot load Kubernetes access from {where}"
                f"{f' context {self.context!r}' if self.context else ''}: {exc}; point K2 at a working kubeconfig"
            ) from exc
        configuration.retries = 1  # a dead API server answers nothing: fail within ~2 timeouts, not 4
        return ChaosMeshApi(client.ApiClient(configuration), self.request_timeout_s)


@dataclass(frozen=True)
class Record:
    """One selected pod or container in `status.experiment.containerRecords`."""

    id: str
    phase: str
    injected_count: int = 0
    recovered_count: int = 0


@dataclass(frozen=True)
class ChaosStatus:
    """What Chaos Mesh reports of one object: `desiredPhase` (Run / Stop), a record per selected target
    with its phase (Injected / Not Injected), the messages of failed apply events, and whether the
    object is being deleted (its finalizer holds it until every record is recovered)."""

    desired_phase: str | None
    records: tuple[Record, ...] = ()
    failures: tuple[str, ...] = ()
    deleting: bool = False
    conditions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ChaosStatus:
        status = obj.get("status") or {}
        experiment = status.get("experiment") or {}
        records, failures = [], []
        for raw in experiment.get("containerRecords") or []:
            records.append(
                Record(
                    str(raw.get("id", "?")),
                    str(raw.get("phase", "")),
                    int(raw.get("injectedCount") or 0),
                    int(raw.get("recoveredCount") or 0),
                )
            )
            for event in raw.get("events") or []:
                if event.get("type") == "Failed":
                    failures.append(f"{raw.get('id')}: {event.get('operation')}: {event.get('message', '')}")
        conditions = {str(c.get("type")): str(c.get("status")) for c in status.get("conditions") or []}
        deleting = bool((obj.get("metadata") or {}).get("deletionTimestamp"))
        return cls(experiment.get("desiredPhase"), tuple(records), tuple(failures), deleting, conditions)

    @property
    def injected(self) -> bool:
        """Every selected target is injected (and at least one was selected)."""
        return self.desired_phase == "Run" and bool(self.records) and all(r.phase == "Injected" for r in self.records)

    def summary(self) -> dict[str, Any]:
        return {
            "desired_phase": self.desired_phase,
            "selected": len(self.records),
            "injected": sum(r.phase == "Injected" for r in self.records),
            "records": [{"id": r.id, "phase": r.phase, "injected_count": r.injected_count} for r in self.records],
            "failures": list(self.failures[-3:]),
        }


class ChaosMeshApi:
    """Chaos Mesh objects through one ApiClient; every call has a timeout and raises `KubernetesApiError`."""

    def __init__(self, api_client: Any, request_timeout_s: float = 10.0) -> None:
        from kubernetes import client

        self._client = api_client
        self._objects = client.CustomObjectsApi(api_client)
        self._timeout = request_timeout_s
        self.host = str(api_client.configuration.host)

    def close(self) -> None:
        self._client.close()

    def create(self, manifest: Mapping[str, Any], plural: str) -> dict[str, Any]:
        namespace = manifest["metadata"]["namespace"]
        created: dict[str, Any] = self._call(
            "create",
            plural,
            namespace,
            manifest["metadata"]["name"],
            self._objects.create_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            dict(manifest),
        )
        return created

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._call(
                "get",
                plural,
                namespace,
                name,
                self._objects.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
            )
        except KubernetesApiError as exc:
            if exc.missing_object:
                return None
            raise
        return found

    def list(self, plural: str, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        result = self._call(
            "list",
            plural,
            namespace,
            selector,
            self._objects.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            label_selector=selector,
        )
        return list(result.get("items") or [])

    def delete(self, plural: str, namespace: str, name: str, uid: str) -> bool:
        """Ask for deletion of exactly the object with `uid`; False if it is already gone (or the name now
        belongs to another object, which is left alone)."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
        try:
            self._call(
                "delete",
                plural,
                namespace,
                name,
                self._objects.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                body=body,
            )
        except KubernetesApiError as exc:
            if exc.missing_object:
                return False
            if exc.status == 409:  # the uid precondition failed: not the object K2 created
                return False
            raise
        return True

    def _call(self, verb: str, plural: str, namespace: str, name: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return method(*args, _request_timeout=self._timeout, **kwargs)
        except ApiException as exc:
            missing = exc.status == 404 and not _is_unknown_resource(exc.body)
            message = self._explain(verb, plural, namespace, name, exc)
            raise KubernetesApiError(message, exc.status or 0, missing_object=missing) from None
        except (HTTPError, OSError) as exc:
            raise KubernetesApiError(
                f"{verb} {plural} {namespace}/{name}: the Kubernetes API server at {self.host} did not answer "
                f"within {self._timeout:g}s ({type(exc).__name__}: {exc}); check that the cluster is up and the "
                "kubeconfig points at it"
            ) from None

    def _explain(self, verb: str, plural: str, namespace: str, name: str, exc: Any) -> str:
        message = _message(exc.body) or exc.reason or "no message"
        what = f"{verb} {plural} {namespace}/{name} at {self.host}: HTTP {exc.status}: {message}"
        if exc.status in (401, 403):
            return (
                f"{what}. Give the account K2 uses create, get, list and delete on {plural}.{GROUP} in "
                f"namespace {namespace} (a Role and RoleBinding)"
            )
        if exc.status == 404 and _is_unknown_resource(exc.body):
            return f"{what}. The cluster does not serve {plural}.{GROUP}/{VERSION}: install Chaos Mesh (v2.x) first"
        if exc.status in (400, 422):
            return f"{what}. The API server or Chaos Mesh's webhook refused the object: this is a K2 bug, report it"
        if exc.status == 409 and verb == "create":
            return f"{what}. An object of that name exists already; K2 names are random, so retry"
        return what


def _message(body: Any) -> str:
    try:
        data = json.loads(body) if isinstance(body, str | bytes) else {}
    except ValueError:
        return str(body)[:300]
    return str(data.get("message", ""))[:500] if isinstance(data, dict) else ""


def _is_unknown_resource(body: Any) -> bool:
    """A 404 for the resource type itself (no such CRD), as opposed to one for a missing object."""
    try:
        data = json.loads(body) if isinstance(body, str | bytes) else {}
    except ValueError:
        return True
    details = data.get("details") if isinstance(data, dict) else None
    return not (isinstance(details, dict) and details.get("name"))
