"""A FAKE Kubernetes API server with a FAKE Chaos Mesh controller, in process, for tests only.

No Kubernetes API server can run on these machines (none in any reachable registry), so the client
path of K2's Kubernetes backend is tested against this: a small HTTP server on 127.0.0.1 speaking the
few REST endpoints the official client uses for Chaos Mesh objects (create, get, list by label
selector, delete with preconditions), with the API server's behaviours K2 relies on (strict schema
validation against the real v2.8.3 CRDs, uid preconditions, 404 Status bodies, finalizers) and a
fake controller that fills `status.experiment` the way Chaos Mesh's records controller does (a record
per selected pod or container, phase Not Injected -> Injected; on delete, desiredPhase Stop,
records recovered, then the `chaos-mesh/records` finalizer removed). It is a model, not Kubernetes:
passing against it says nothing about a live cluster.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.unit.chaos.kubernetes.crds import schema_errors

from k2.chaos.kubernetes.admission import admission_errors

KINDS = {
    "podchaos": "PodChaos",
    "networkchaos": "NetworkChaos",
    "iochaos": "IOChaos",
    "timechaos": "TimeChaos",
    "workflows": "Workflow",
}
FINALIZER = "chaos-mesh/records"
_PATH = re.compile(r"^/apis/chaos-mesh\.org/v1alpha1/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?$")


@dataclass
class FakePod:
    namespace: str
    name: str
    labels: dict[str, str]
    containers: tuple[str, ...] = ("main",)


@dataclass
class FakeControllerBehaviour:
    """How the fake Chaos Mesh controller treats new objects."""

    reads_until_injected: int = 1  # GETs of the object before its records turn Injected
    apply_failure: str | None = None  # records stay Not Injected with this Failed event
    reads_until_recovered: int = 1  # GETs after a delete before the finalizer is removed
    stuck_finalizer: bool = False  # the controller never recovers (e.g. it is down)


@dataclass
class FakeCluster:
    pods: list[FakePod] = field(default_factory=list)
    behaviour: FakeControllerBehaviour = field(default_factory=FakeControllerBehaviour)
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (plural, ns, name)
    reads: dict[tuple[str, str, str], int] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    served_plurals: set[str] = field(default_factory=lambda: set(KINDS))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def select(self, namespace: str, selector: Mapping[str, Any]) -> list[FakePod]:
        namespaces = selector.get("namespaces") or [namespace]
        labels = selector.get("labelSelectors") or {}
        return [
            p for p in self.pods if p.namespace in namespaces and all(p.labels.get(k) == v for k, v in labels.items())
        ]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }


class _Handler(BaseHTTPRequestHandler):
    cluster: FakeCluster

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> tuple[str, str, str | None] | None:
        url = urlparse(self.path)
        match = _PATH.match(url.path)
        self.cluster.requests.append((self.command, self.path))
        if not match or match.group(2) not in self.cluster.served_plurals:
            self._send(404, _status(404, "NotFound", "the server could not find the requested resource"))
            return None
        return match.group(2), match.group(1), match.group(3)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _not_found(self, plural: str, name: str) -> None:
        self._send(
            404,
            _status(
                404,
                "NotFound",
                f'{plural}.chaos-mesh.org "{name}" not found',
                {"name": name, "group": "chaos-mesh.org", "kind": plural},
            ),
        )

    def do_POST(self) -> None:
        route = self._route()
        if route is None:
            return
        plural, namespace, _ = route
        body = self._body()
        meta = body.get("metadata") or {}
        errors = []
        if body.get("kind") != KINDS[plural]:
            errors.append(f"kind {body.get('kind')!r} posted to {plural}")
        if meta.get("namespace", namespace) != namespace:
            errors.append("the namespace of the object does not match the namespace of the request")
        errors += schema_errors(body)
        if errors:
            self._send(422, _status(422, "Invalid", f"{KINDS[plural]} is invalid: " + "; ".join(errors)))
            return
        webhook = admission_errors(body)
        if webhook:
            self._send(
                400,
                _status(
                    400, "BadRequest", 'admission webhook "vchaos.kb.io" denied the request: ' + "; ".join(webhook)
                ),
            )
            return
        key = (plural, namespace, meta["name"])
        with self.cluster.lock:
            if key in self.cluster.objects:
                self._send(409, _status(409, "AlreadyExists", f'{plural} "{meta["name"]}" already exists'))
                return
            obj = copy.deepcopy(body)
            obj["metadata"].update(
                namespace=namespace,
                uid=str(uuid.uuid4()),
                resourceVersion="1",
                creationTimestamp=_now(),
                finalizers=[FINALIZER],
            )
            obj["status"] = {"experiment": {"desiredPhase": "Run", "containerRecords": self._records(obj)}}
            self.cluster.objects[key] = obj
            self.cluster.reads[key] = 0
        self._send(201, obj)

    def _records(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        spec, namespace = obj.get("spec", {}), obj["metadata"]["namespace"]
        sides = [(".", spec.get("selector") or {})]
        if isinstance(spec.get("target"), Mapping):
            sides.append((".Target", spec["target"].get("selector") or {}))
        records = []
        for key, selector in sides:
            for pod in self.cluster.select(namespace, selector):
                names = spec.get("containerNames") or []
                ids = [f"{pod.namespace}/{pod.name}/{c}" for c in names] if names else [f"{pod.namespace}/{pod.name}"]
                records += [
                    {"id": i, "selectorKey": key, "phase": "Not Injected", "injectedCount": 0, "recoveredCount": 0}
                    for i in ids
                ]
        return records

    def do_GET(self) -> None:
        route = self._route()
        if route is None:
            return
        plural, namespace, name = route
        with self.cluster.lock:
            if name is None:
                query = parse_qs(urlparse(self.path).query)
                wanted = dict(
                    part.split("=", 1) for part in ",".join(query.get("labelSelector", [])).split(",") if "=" in part
                )
                items = [
                    copy.deepcopy(o)
                    for (p, ns, _), o in self.cluster.objects.items()
                    if p == plural
                    and ns == namespace
                    and all((o["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
                ]
                self._send(
                    200,
                    {
                        "apiVersion": "chaos-mesh.org/v1alpha1",
                        "kind": KINDS[plural] + "List",
                        "metadata": {"resourceVersion": "1"},
                        "items": items,
                    },
                )
                return
            key = (plural, namespace, name)
            obj = self.cluster.objects.get(key)
            if obj is None:
                self._not_found(plural, name)
                return
            self.cluster.reads[key] += 1
            self._advance(key, obj)
            obj = self.cluster.objects.get(key)
            if obj is None:
                self._not_found(plural, name)
                return
            self._send(200, copy.deepcopy(obj))

    def _advance(self, key: tuple[str, str, str], obj: dict[str, Any]) -> None:
        """The fake controller's reconcile step, run on each read of the object."""
        behaviour, reads = self.cluster.behaviour, self.cluster.reads[key]
        records = obj["status"]["experiment"]["containerRecords"]
        if obj["metadata"].get("deletionTimestamp"):
            if behaviour.stuck_finalizer or reads < behaviour.reads_until_recovered:
                return
            for record in records:
                if record["phase"] == "Injected":
                    record["phase"], record["recoveredCount"] = "Not Injected", record["recoveredCount"] + 1
            del self.cluster.objects[key]  # finalizer removed: the object is gone
            return
        if behaviour.apply_failure:
            for record in records:
                record["events"] = [
                    {"type": "Failed", "operation": "Apply", "message": behaviour.apply_failure, "timestamp": _now()}
                ]
        elif reads >= behaviour.reads_until_injected:
            for record in records:
                if record["phase"] != "Injected":
                    record["phase"], record["injectedCount"] = "Injected", record["injectedCount"] + 1
                    record["events"] = [{"type": "Succeeded", "operation": "Apply", "timestamp": _now()}]

    def do_DELETE(self) -> None:
        route = self._route()
        if route is None or route[2] is None:
            return
        plural, namespace, name = route
        body = self._body()
        key = (plural, namespace, name)
        with self.cluster.lock:
            obj = self.cluster.objects.get(key)
            if obj is None:
                self._not_found(plural, name)
                return
            wanted_uid = (body.get("preconditions") or {}).get("uid")
            if wanted_uid and wanted_uid != obj["metadata"]["uid"]:
                self._send(
                    409,
                    _status(
                        409,
                        "Conflict",
                        f"Precondition failed: UID in precondition: {wanted_uid}, "
                        f"UID in object meta: {obj['metadata']['uid']}",
                    ),
                )
                return
            obj["metadata"].setdefault("deletionTimestamp", _now())
            obj["status"]["experiment"]["desiredPhase"] = "Stop"
            self.cluster.reads[key] = 0
        self._send(200, copy.deepcopy(obj))


@contextmanager
def fake_api_server(tmp_path: Path, cluster: FakeCluster | None = None) -> Iterator[tuple[FakeCluster, Path]]:
    """Run the FAKE API server on 127.0.0.1; yields the cluster model and a kubeconfig pointing at it."""
    cluster = cluster or FakeCluster()
    handler = type("FakeApiHandler", (_Handler,), {"cluster": cluster})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-kube-apiserver", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    kubeconfig = tmp_path / "fake-kubeconfig.yaml"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://{host}:{port}"}}],
                "users": [{"name": "fake", "user": {}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            }
        )
    )
    try:
        yield cluster, kubeconfig
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
