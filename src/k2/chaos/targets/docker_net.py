"""Network partition of a container: disconnect it from its Docker networks, reconnect it exactly.

What an exact rejoin needs (each network's id, aliases, IPv4/IPv6 address, links) is read from
`docker inspect` while the container is still connected and kept in the target's description, so
the journal can rejoin it from another process. Docker refuses a fixed address on networks whose
subnet it chose itself; there the container gets the address IPAM hands out (usually the same,
the lowest free one) and the difference is reported rather than hidden.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from k2.chaos.errors import RestoreFailed
from k2.chaos.targets.docker_engine import api_error

if TYPE_CHECKING:
    import docker

__all__ = ["disconnect", "exposed_tcp_ports", "published_addresses", "reconnect", "rejoin_mismatches", "snapshot"]

log = logging.getLogger(__name__)

# Docker's predefined networks: no aliases or fixed addresses on them.
_PREDEFINED = frozenset({"bridge", "host", "none"})


def snapshot(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The container's network attachments, in the form `reconnect` needs."""
    short_id = attrs["Id"][:12]
    entries = []
    for name, net in sorted((attrs.get("NetworkSettings", {}).get("Networks") or {}).items()):
        ipam = net.get("IPAMConfig") or {}
        entries.append(
            {
                "name": name,
                "id": net.get("NetworkID", ""),
                # Docker adds the short container id itself on every reconnect.
                "aliases": [a for a in (net.get("Aliases") or []) if a != short_id],
                "ipv4": net.get("IPAddress") or None,
                "ipv4_pinned": ipam.get("IPv4Address") or None,
                "ipv6": net.get("GlobalIPv6Address") or None,
                "ipv6_pinned": ipam.get("IPv6Address") or None,
                "link_local_ips": list(ipam.get("LinkLocalIPs") or []),
                "links": list(net.get("Links") or []),
                "mac": net.get("MacAddress") or None,
            }
        )
    return entries


def exposed_tcp_ports(attrs: Mapping[str, Any]) -> list[int]:
    ports = (attrs.get("Config", {}).get("ExposedPorts") or {}).keys()
    return sorted(int(p.split("/")[0]) for p in ports if p.endswith("/tcp"))


def published_addresses(attrs: Mapping[str, Any]) -> list[tuple[str, int]]:
    """Host addresses of published TCP ports (0.0.0.0 is tried on loopback)."""
    found = []
    for key, bindings in (attrs.get("NetworkSettings", {}).get("Ports") or {}).items():
        if not key.endswith("/tcp"):
            continue
        for binding in bindings or []:
            host = binding.get("HostIp") or "127.0.0.1"
            if host in ("0.0.0.0", "::", ""):
                host = "127.0.0.1"
            if ":" not in host and binding.get("HostPort"):
                found.append((host, int(binding["HostPort"])))
    return sorted(set(found))


def disconnect(client: docker.DockerClient, container_id: str, entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Disconnect from each network; returns the ones this call disconnected."""
    import docker.errors

    done = []
    for entry in entries:
        try:
            client.api.disconnect_container_from_network(container_id, entry["id"] or entry["name"])
        except docker.errors.APIError as exc:
            if "is not connected" in api_error(exc):
                continue
            raise
        done.append(entry["name"])
    return done


def _links(entry: Mapping[str, Any]) -> dict[str, str] | None:
    links = {}
    for link in entry.get("links") or []:
        source, _, alias = str(link).partition(":")
        links[source.lstrip("/")] = alias.rsplit("/", 1)[-1] or source
    return links or None


def reconnect(
    client: docker.DockerClient, container_id: str, entries: Sequence[Mapping[str, Any]], connected: set[str]
) -> dict[str, Any]:
    """Connect every recorded network not in `connected`, with its aliases, links and addresses."""
    import docker.errors

    report: dict[str, Any] = {}
    for entry in entries:
        name = entry["name"]
        if name in connected:
            continue
        kwargs: dict[str, Any] = {}
        if name not in _PREDEFINED:
            kwargs = {"aliases": list(entry["aliases"]) or None, "links": _links(entry)}
            if entry.get("link_local_ips"):
                kwargs["link_local_ips"] = list(entry["link_local_ips"])
            if entry.get("ipv6_pinned"):
                kwargs["ipv6_address"] = entry["ipv6_pinned"]
        address = entry.get("ipv4_pinned") or entry.get("ipv4")
        how = "same address requested"
        try:
            network = _network(client, entry)
            try:
                network.connect(container_id, ipv4_address=address if name not in _PREDEFINED else None, **kwargs)
            except docker.errors.APIError as exc:
                text = api_error(exc)
                # Auto-assigned subnet (fixed addresses refused) or the address was taken meanwhile.
                if not address or not ("user configured subnets" in text or "in use" in text):
                    raise
                level = logging.INFO if "user configured subnets" in text else logging.WARNING
                log.log(level, "rejoin %s: %s; connecting with an address Docker assigns", name, text)
                how = f"address assigned by Docker ({text})"
                network.connect(container_id, **kwargs)
        except docker.errors.APIError as exc:
            raise RestoreFailed(
                f"container {container_id[:12]}: reconnecting network {name} failed: {api_error(exc)}; "
                f"reconnect it by hand (docker network connect --alias ... {name} {container_id[:12]}) "
                "then run `k2 chaos recover`"
            ) from exc
        report[name] = how
    return report


def _network(client: docker.DockerClient, entry: Mapping[str, Any]) -> Any:
    import docker.errors

    try:
        return client.networks.get(entry["id"] or entry["name"])
    except docker.errors.NotFound:
        # The network was recreated under the same name (a new id): connect to that one.
        try:
            return client.networks.get(entry["name"])
        except docker.errors.NotFound as exc:
            raise RestoreFailed(
                f"network {entry['name']} ({entry['id'][:12]}) was removed while K2 held the partition; "
                "recreate it (docker compose up) to reconnect the container"
            ) from exc


def rejoin_mismatches(attrs: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """What differs from the recorded attachments: "missing" networks (fatal), and "aliases",
    "addresses" differences (reported)."""
    now = {e["name"]: e for e in snapshot(attrs)}
    missing, aliases, addresses = [], [], []
    for entry in entries:
        current = now.get(entry["name"])
        if current is None:
            missing.append(entry["name"])
            continue
        lost = sorted(set(entry["aliases"]) - set(current["aliases"]))
        if lost:
            aliases.append(f"{entry['name']}: lost {lost}")
        if entry.get("ipv4") and current.get("ipv4") != entry["ipv4"]:
            addresses.append(f"{entry['name']}: {entry['ipv4']} -> {current.get('ipv4')}")
    return {"missing": missing, "aliases": aliases, "addresses": addresses}
