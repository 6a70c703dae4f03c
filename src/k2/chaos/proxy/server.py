"""`ProxyServer`: many proxies in one process, plus (optionally) Toxiproxy's HTTP API on loopback."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from http.server import ThreadingHTTPServer
from typing import Any

from k2.chaos.errors import InvalidFault
from k2.chaos.proxy import _net
from k2.chaos.proxy.errors import AlreadyExists, NotFound
from k2.chaos.proxy.proxy import Proxy

log = logging.getLogger(__name__)


class ProxyServer:
    """A named collection of proxies sharing one seed; `api=` serves Toxiproxy's HTTP API for them.

    Any Toxiproxy client can drive it; the Python API (`create`, `get`, `remove`, `reset`) does the same
    without HTTP. All proxies and the API bind to 127.0.0.1 only.
    """

    def __init__(self, api: _net.Address | str | None = None, *, seed: int | None = None) -> None:
        self._api_address = _net.parse_address(api, "API") if api is not None else None
        self.seed = seed
        self._lock = threading.RLock()
        self._proxies: dict[str, Proxy] = {}
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> ProxyServer:
        if self._api_address is not None and self._http is None:
            from k2.chaos.proxy.api import make_handler

            http = ThreadingHTTPServer(self._api_address, make_handler(self))
            http.daemon_threads = True
            self._http = http
            self._thread = threading.Thread(
                target=http.serve_forever, kwargs={"poll_interval": 0.2}, name="k2-proxy-api", daemon=True
            )
            self._thread.start()
            log.info("proxy API on http://%s:%d", *self.api_address)
        return self

    def stop(self) -> None:
        """Stop the API and every proxy."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        for proxy in self.proxies():
            proxy.stop()
        with self._lock:
            self._proxies.clear()

    def __enter__(self) -> ProxyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_address(self) -> _net.Address:
        if self._http is None:
            raise InvalidFault("the proxy API is not running; pass api=('127.0.0.1', 0) and call start()")
        host, port = self._http.server_address[:2]
        return (str(host), int(port))

    @property
    def api_url(self) -> str:
        return "http://{}:{}".format(*self.api_address)

    # --- proxies --------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        upstream: _net.Address | str,
        listen: _net.Address | str = (_net.LOOPBACK, 0),
        *,
        enabled: bool = True,
        **options: Any,
    ) -> Proxy:
        """Create and start a proxy; AlreadyExists if the name is taken."""
        with self._lock:
            if name in self._proxies:
                raise AlreadyExists(f"proxy {name!r} already exists; delete it first or pick another name")
            proxy = Proxy(name, listen, upstream, seed=self.seed, enabled=enabled, **options)
            proxy.start()
            self._proxies[name] = proxy
            return proxy

    def get(self, name: str) -> Proxy:
        with self._lock:
            try:
                return self._proxies[name]
            except KeyError:
                known = ", ".join(sorted(self._proxies)) or "none"
                raise NotFound(f"proxy {name!r} not found; existing proxies: {known}") from None

    def __getitem__(self, name: str) -> Proxy:
        return self.get(name)

    def remove(self, name: str) -> None:
        """Stop and forget a proxy; its connections are closed."""
        with self._lock:
            proxy = self.get(name)
            del self._proxies[name]
        proxy.stop()

    def proxies(self) -> list[Proxy]:
        with self._lock:
            return list(self._proxies.values())

    def populate(self, specs: Iterable[Mapping[str, Any]]) -> list[Proxy]:
        """Toxiproxy's /populate: create each proxy, replacing one whose listen or upstream differs."""
        result = []
        for spec in specs:
            name, upstream = spec.get("name"), spec.get("upstream")
            if not name or not upstream:
                raise InvalidFault(f"populate entry {dict(spec)!r} lacks name or upstream; give both")
            listen = spec.get("listen", f"{_net.LOOPBACK}:0")
            enabled = bool(spec.get("enabled", True))
            with self._lock:
                existing = self._proxies.get(name)
                if existing is not None and self._same(existing, listen, upstream):
                    existing.update(enabled=enabled)
                    result.append(existing)
                    continue
                if existing is not None:
                    self.remove(name)
                result.append(self.create(name, upstream, listen, enabled=enabled))
        return result

    @staticmethod
    def _same(proxy: Proxy, listen: Any, upstream: Any) -> bool:
        wanted_listen = _net.parse_address(listen, "listen")
        current = proxy.to_json()["listen"]
        listen_ok = wanted_listen[1] == 0 or _net.format_address(wanted_listen) == current
        return listen_ok and _net.parse_address(upstream, "upstream") == proxy.upstream

    def reset(self) -> None:
        """Enable every proxy and remove every toxic and partition."""
        for proxy in self.proxies():
            proxy.reset()
