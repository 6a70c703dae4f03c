"""Where a service lives in a cluster, validated before K2 builds anything that points at it.

A `Placement` names one service's pods: a namespace and a label selector that must not be empty
(an empty selector is every pod of the namespace), the container faults act on, the volume its data
is on, and the pods of its named clients (for one-way and partial partitions). K2 touches only the
namespace given, never a system one, and labels every object it creates with its run id, so its
own objects are the only ones it will ever delete.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from k2.chaos.errors import InvalidFault, UnsafeTarget, Unsupported

__all__ = [
    "FORBIDDEN_NAMESPACES",
    "LABEL_MANAGED_BY",
    "LABEL_PRIMITIVE",
    "LABEL_RUN",
    "LABEL_SERVICE",
    "MANAGED_BY",
    "Placement",
    "check_label_key",
    "check_label_value",
    "check_name",
    "check_run_id",
    "new_run_id",
    "ownership_labels",
]

MANAGED_BY = "k2"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_RUN = "k2.chaos/run"
LABEL_SERVICE = "k2.chaos/service"
LABEL_PRIMITIVE = "k2.chaos/primitive"
# Namespaces no chaos experiment of K2 may select pods in: the cluster's own machinery.
FORBIDDEN_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_RUN_ID = re.compile(r"^[a-z0-9]{6,20}$")


def check_name(value: object, what: str, *, subdomain: bool = False) -> str:
    """A DNS-1123 label (namespaces, containers; <= 63) or subdomain (object names; <= 253)."""
    limit, pattern = (253, _DNS_SUBDOMAIN) if subdomain else (63, _DNS_LABEL)
    if not isinstance(value, str) or not value or len(value) > limit or not pattern.match(value):
        kind = "DNS-1123 subdomain" if subdomain else "DNS-1123 label"
        raise InvalidFault(
            f"{what}={value!r} is not a Kubernetes {kind}: use at most {limit} lowercase letters, digits and '-'"
            + (" or '.'" if subdomain else "")
            + ", starting and ending with a letter or digit"
        )
    return value


def check_label_key(key: object, what: str) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidFault(f"{what}: label key {key!r} must be a non-empty string such as 'app' or 'app.k8s.io/name'")
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise InvalidFault(f"{what}: label key {key!r} has a prefix that is not a DNS subdomain")
    if len(name) > 63 or not _LABEL_NAME.match(name):
        raise InvalidFault(
            f"{what}: label key {key!r} is not valid: the name part is at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return key


def check_label_value(value: object, what: str) -> str:
    if not isinstance(value, str) or len(value) > 63 or (value and not _LABEL_NAME.match(value)):
        raise InvalidFault(
            f"{what}: label value {value!r} is not valid: at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return value


def _check_selector(selector: object, what: str) -> dict[str, str]:
    if not isinstance(selector, Mapping) or not selector:
        raise UnsafeTarget(
            f"{what}: a non-empty label selector is required (an empty one selects every pod of the namespace); "
            "give the labels of the service's pods, e.g. {'app.kubernetes.io/name': 'kafka'}"
        )
    return {check_label_key(k, what): check_label_value(v, what) for k, v in selector.items()}


def new_run_id() -> str:
    """A fresh run id: the label that marks every object one K2 run creates."""
    return secrets.token_hex(6)


def check_run_id(run_id: object) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise InvalidFault(f"run_id={run_id!r}: expected 6-20 lowercase letters or digits (see new_run_id())")
    return run_id


def ownership_labels(run_id: str, service: str, primitive: str) -> dict[str, str]:
    """The labels that make an object K2's, this run's, this service's and this primitive's."""
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_RUN: check_run_id(run_id),
        LABEL_SERVICE: service,
        LABEL_PRIMITIVE: primitive.replace("_", "-"),
    }


@dataclass(frozen=True)
class Placement:
    """One service's pods. `clients` maps a K2 client label (as faults name them) to its pods' selector,
    in the same namespace."""

    service: str
    namespace: str
    selector: Mapping[str, str]
    container: str | None = None
    volume_path: str | None = None
    clients: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name(self.service, "service")
        check_name(self.namespace, f"{self.service}: namespace")
        if self.namespace in FORBIDDEN_NAMESPACES:
            raise UnsafeTarget(
                f"{self.service}: namespace {self.namespace!r} belongs to the cluster itself; K2 never injects "
                "faults there. Deploy the service under test in its own namespace"
            )
        object.__setattr__(self, "selector", _check_selector(self.selector, f"{self.service}: selector"))
        if self.container is not None:
            check_name(self.container, f"{self.service}: container")
        if self.volume_path is not None and (
            not isinstance(self.volume_path, str) or not self.volume_path.startswith("/") or "\0" in self.volume_path
        ):
            raise InvalidFault(
                f"{self.service}: volume_path={self.volume_path!r} must be the absolute mount path of the "
                "service's data volume inside its container, e.g. '/var/lib/kafka'"
            )
        if not isinstance(self.clients, Mapping):
            raise InvalidFault(f"{self.service}: clients must map a client label to a pod selector")
        clients = {}
        for label, selector in self.clients.items():
            if not isinstance(label, str) or not label:
                raise InvalidFault(f"{self.service}: client label {label!r} must be a non-empty string")
            clients[label] = _check_selector(selector, f"{self.service}: client {label!r} selector")
        object.__setattr__(self, "clients", clients)

    def client_selector(self, clients: list[str]) -> dict[str, str]:
        """One selector for the named clients; several must share it (Chaos Mesh takes one selector
        per side), otherwise the remedy is one fault per client."""
        unknown = [c for c in clients if c not in self.clients]
        if unknown:
            raise InvalidFault(
                f"{self.service}: client(s) {unknown} have no pod selector in this placement (known: "
                f"{sorted(self.clients) or 'none'}); add them under 'clients'"
            )
        selectors = {tuple(sorted(self.clients[c].items())) for c in clients}
        if len(selectors) != 1:
            raise Unsupported(
                f"{self.service}: clients {clients} have different pod selectors and a Chaos Mesh object takes one "
                "target selector: inject one fault per client"
            )
        return dict(self.clients[clients[0]])

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "namespace": self.namespace,
            "selector": dict(self.selector),
            "container": self.container,
            "volume_path": self.volume_path,
            "clients": {k: dict(v) for k, v in self.clients.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Placement:
        if not isinstance(data, Mapping):
            raise InvalidFault(f"placement must be a mapping, got {type(data).__name__}")
        known = {"service", "namespace", "selector", "container", "volume_path", "clients"}
        extra = sorted(set(data) - known)
        if extra:
            raise InvalidFault(
                f"placement of {data.get('service')!r}: unknown field(s) {extra}; known: {sorted(known)}"
            )
        missing = sorted({"service", "namespace", "selector"} - set(data))
        if missing:
            raise InvalidFault(f"placement of {data.get('service')!r}: missing {missing}")
        return cls(
            service=data["service"],
            namespace=data["namespace"],
            selector=data["selector"],
            container=data.get("container"),
            volume_path=data.get("volume_path"),
            clients=data.get("clients") or {},
        )
