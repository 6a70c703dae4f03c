"""A service seen through its fault proxy: network faults as calls to the proxy's HTTP API.

Everything needed to undo a fault (the API address, the proxy's name, the toxics added, whether the
proxy was disabled) is in `describe()`, so the journal's watchdog can undo it after the runner died.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

from k2.chaos.effects import Healed, Partitioned, Shaped, measure
from k2.chaos.errors import InjectionFailed, InvalidFault, RestoreFailed, UnsafeTarget
from k2.chaos.targets.base import Probe, probe_rtt_ms
from k2.chaos.targets.capabilities import Capability

PREFIX = "k2_"


def _loopback(api_url: str) -> bool:
    host = urlsplit(api_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ProxyTarget:
    """The fault proxy's side of one service. Only a proxy API on loopback is accepted: K2's fault proxy
    runs next to the runner, and no fault is ever sent to another machine."""

    kind = "proxy"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.NETWORK})

    def __init__(
        self, name: str, api_url: str, *, proxy: str | None = None, applied: Mapping[str, Any] | None = None
    ) -> None:
        if not _loopback(api_url):
            raise UnsafeTarget(
                f"{name}: fault proxy API {api_url!r} is not on loopback; K2 only drives the fault proxy it runs on "
                "this machine (its API listens on 127.0.0.1): use the stack's K2_FAULT_PROXY_URL"
            )
        self.name = name
        self.api_url = api_url.rstrip("/")
        self.proxy = proxy or name
        applied = applied or {}
        self.toxics: list[str] = list(applied.get("toxics", []))
        self.disabled: bool = bool(applied.get("disabled", False))

    @classmethod
    def from_description(cls, desc: Mapping[str, Any]) -> ProxyTarget:
        if desc.get("kind") != cls.kind:
            raise InvalidFault(f"not a proxy target description: kind={desc.get('kind')!r}")
        return cls(desc["name"], desc["api_url"], proxy=desc.get("proxy"), applied=desc.get("applied"))

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "api_url": self.api_url,
            "proxy": self.proxy,
            "applied": {"toxics": list(self.toxics), "disabled": self.disabled},
        }

    def __repr__(self) -> str:
        return f"ProxyTarget({self.name!r} via {self.api_url})"

    # -- the proxy's API -------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, *, missing_ok: bool = False) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.api_url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            if missing_ok and exc.code == 404:
                return None
            detail = exc.read().decode(errors="replace")
            raise InjectionFailed(f"{self.name}: fault proxy answered {exc.code} to {method} {path}: {detail}") from exc
        except OSError as exc:
            raise InjectionFailed(
                f"{self.name}: fault proxy at {self.api_url} unreachable ({exc}); is the stack's fault-proxy "
                "running? `k2 stack status` shows it"
            ) from exc
        return json.loads(raw) if raw else None

    def listen_address(self) -> tuple[str, int]:
        host, _, port = self._call("GET", f"/proxies/{self.proxy}")["listen"].rpartition(":")
        return host, int(port)

    def _add_toxic(self, spec: dict[str, Any]) -> None:
        self._call("POST", f"/proxies/{self.proxy}/toxics", spec)
        self.toxics.append(spec["name"])

    # -- isolate / rejoin -----------------------------------------------------------------------

    def isolate(
        self,
        mode: str = "refuse",
        direction: str = "both",
        clients: Sequence[str] | None = None,
        probe: Probe | None = None,
    ) -> Partitioned:
        """Cut the service off: `refuse` new connections and reset open ones, or `blackhole` the
        traffic (held, like a real partition) in one or both directions; only for `clients` if named."""
        t0, wall = time.monotonic(), time.time()
        new_connections = None
        if mode == "refuse" and clients is None:
            self._call("POST", f"/proxies/{self.proxy}", {"enabled": False})
            self.disabled = True
            new_connections = self._try_connect()
            if new_connections == "connected":
                self.rejoin()
                raise InjectionFailed(f"{self.name}: proxy disabled but a new connection still succeeded")
        elif mode == "refuse":
            self._add_toxic(
                {"name": f"{PREFIX}partition_reset", "type": "reset_peer", "stream": "upstream",
                 "attributes": {"timeout": 0}, "clients": list(clients or [])}
            )  # fmt: skip
        else:
            streams = ["upstream", "downstream"] if direction == "both" else [direction]
            for stream in streams:
                spec = {"name": f"{PREFIX}partition_{stream}", "type": "blackhole", "stream": stream,
                        "attributes": {"mode": "hold"}}  # fmt: skip
                if clients is not None:
                    spec["clients"] = list(clients)
                self._add_toxic(spec)
        answered = None
        if probe is not None:
            answered = probe(1.0)
            # Named clients only: other clients (the probe) must still get through.
            if answered != (clients is not None):
                self.rejoin()
                raise InjectionFailed(
                    f"{self.name}: partition {mode}/{direction} did not take: the health probe "
                    f"{'answered' if answered else 'did not answer'}"
                )
        return measure(Partitioned, "isolate", self.name, self.kind, t0, wall, mode=mode, direction=direction,
                       clients=tuple(clients) if clients is not None else None, new_connections=new_connections,
                       answered=answered, detail={"toxics": list(self.toxics)})  # fmt: skip

    def _try_connect(self) -> str:
        try:
            with socket.create_connection(self.listen_address(), timeout=1.0) as sock:
                sock.settimeout(0.5)
                try:
                    return "reset" if sock.recv(1) == b"" else "connected"
                except TimeoutError:
                    return "connected"
                except ConnectionResetError:
                    return "reset"
        except ConnectionRefusedError:
            return "refused"
        except ConnectionResetError:
            return "reset"
        except TimeoutError:
            return "timed out"

    def rejoin(self) -> Healed:
        """Remove every toxic this target added and re-enable the proxy. Idempotent."""
        t0, wall = time.monotonic(), time.time()
        changed = bool(self.toxics) or self.disabled
        try:
            for name in list(self.toxics):
                self._call("DELETE", f"/proxies/{self.proxy}/toxics/{name}", missing_ok=True)
                self.toxics.remove(name)
            if self.disabled:
                self._call("POST", f"/proxies/{self.proxy}", {"enabled": True})
                self.disabled = False
            state = self._call("GET", f"/proxies/{self.proxy}")
        except InjectionFailed as exc:
            raise RestoreFailed(f"{exc}; then run `k2 chaos recover`") from exc
        return self._healed("rejoin", t0, wall, state, changed)

    def _healed(self, primitive: str, t0: float, wall: float, state: Mapping[str, Any], changed: bool) -> Healed:
        leftover = [t["name"] for t in state.get("toxics", []) if t["name"].startswith(PREFIX)]
        if not state.get("enabled") or leftover:
            raise RestoreFailed(
                f"{self.name}: proxy still {'enabled' if state.get('enabled') else 'disabled'} with K2 toxics "
                f"{leftover} after restore; run `k2 chaos recover`"
            )
        return measure(Healed, primitive, self.name, self.kind, t0, wall, leftovers=tuple(leftover), changed=changed,
                       detail={"enabled": state.get("enabled")})  # fmt: skip

    # -- shape / unshape ------------------------------------------------------------------------

    def shape(
        self,
        toxic: str,
        stream: str = "downstream",
        toxicity: float = 1.0,
        attributes: Mapping[str, Any] | None = None,
        clients: Sequence[str] | None = None,
        probe: Probe | None = None,
    ) -> Shaped:
        """Add one toxic (latency, bandwidth, slicer, ...); measures the probe's round trip with it."""
        t0, wall = time.monotonic(), time.time()
        baseline = probe_rtt_ms(probe)
        spec: dict[str, Any] = {"name": f"{PREFIX}{toxic}_{stream}", "type": toxic, "stream": stream,
                                "toxicity": toxicity, "attributes": dict(attributes or {})}  # fmt: skip
        if clients is not None:
            spec["clients"] = list(clients)
        self._add_toxic(spec)
        listed = [t["name"] for t in self._call("GET", f"/proxies/{self.proxy}/toxics")]
        if spec["name"] not in listed:
            raise InjectionFailed(f"{self.name}: toxic {spec['name']} was added but is not listed by the proxy")
        return measure(
            Shaped,
            "shape",
            self.name,
            self.kind,
            t0,
            wall,
            toxic=toxic,
            stream=stream,
            attributes=dict(attributes or {}),
            rtt_ms_before=baseline,
            rtt_ms_with=probe_rtt_ms(probe) if probe is not None else None,
            detail={"toxicity": toxicity, "clients": list(clients) if clients is not None else None},
        )

    def unshape(self) -> Healed:
        """Remove every toxic this target added. Idempotent. The effect records, per toxic, on how many
        connections its toxicity roll applied it and on how many it did not (read just before removal)."""
        decisions = self._decisions()
        effect = self.rejoin()
        detail = {**effect.detail, "toxicity_decisions": decisions} if decisions else effect.detail
        return dataclasses.replace(effect, primitive="unshape", detail=detail)

    def _decisions(self) -> dict[str, Any]:
        if not self.toxics:
            return {}
        try:
            state = self._call("GET", f"/proxies/{self.proxy}")
        except InjectionFailed:  # the restore that follows reports an unreachable proxy; this is only a count
            return {}
        counts = state.get("toxicity_decisions") or {}
        return {name: counts[name] for name in self.toxics if name in counts}

    def set_seed(self, seed: int) -> None:
        """Seed the fault proxy's toxicity rolls and jitter (every proxy behind this API), from here on."""
        self._call("POST", "/seed", {"seed": seed})
