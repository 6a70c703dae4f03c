"""`ProxyServer`: many proxies in one process, plus (optionally) Toxiproxy's HTTP API on loopback."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from k2.chaos.errors import InvalidFault
from k2.chaos.proxy import _net
from k2.chaos.proxy.errors import AlreadyExists, NotFound
from k2.chaos.proxy.proxy import Proxy

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

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
        self._pinned: set[str] = set()
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> ProxyServer:
        if self._api_address is not None and self._http is None:
            from http.server import ThreadingHTTPServer  # here: a proxy without an API never loads it

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
        pinned: bool = False,
        **options: Any,
    ) -> Proxy:
        """Create and start a proxy; AlreadyExists if the name or the listen port is taken.

        A `pinned` proxy (the stack's own, one per service) keeps its listen and upstream addresses:
        the HTTP API refuses to re-point, replace or delete it, so no caller can redirect a service's
        traffic; its toxics and enabled state change as usual.
        """
        self.check_name(name, "proxy name")
        with self._lock:
            if name in self._proxies:
                raise AlreadyExists(f"proxy {name!r} already exists; delete it first or pick another name")
            proxy = Proxy(name, listen, upstream, seed=self.seed, enabled=enabled, **options)
            try:
                proxy.start()
            except OSError as exc:
                proxy.stop()
                raise AlreadyExists(
                    f"proxy {name!r} cannot listen on {_net.format_address(proxy.listen)}: {exc.strerror or exc}; "
                    "pick a free port (or 0 for any)"
                ) from None
            self._proxies[name] = proxy
            if pinned:
                self._pinned.add(name)
            return proxy

    @staticmethod
    def check_name(name: object, what: str) -> None:
        """Names are shown in logs, reports and URLs: printable text without '/', at most 200 characters."""
        if not isinstance(name, str) or not name or len(name) > 200 or "/" in name or not name.isprintable():
            raise InvalidFault(
                f"{what} {str(name)[:80]!r} is invalid; use 1-200 printable characters without '/' "
                "(no control characters)"
            )
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidFault(f"{what} {name[:80]!r} holds a lone surrogate; use valid Unicode") from None

    def is_pinned(self, name: str) -> bool:
        with self._lock:
            return name in self._pinned

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
            self._pinned.discard(name)
        proxy.stop()

    def proxies(self) -> list[Proxy]:
        with self._lock:
            return list(self._proxies.values())

    def populate(self, specs: Iterable[Mapping[str, Any]]) -> list[Proxy]:
        """Toxiproxy's /populate, all or nothing: every entry is checked before any proxy is touched; a
        proxy whose listen or upstream differs is replaced. If one cannot start (its port is taken), the
        proxies this call created are removed and those it replaced are put back, then the error is raised."""
        checked = []
        for spec in specs:
            name, upstream = spec.get("name"), spec.get("upstream")
            if not name or not upstream:
                raise InvalidFault(f"populate entry {dict(spec)!r} lacks name or upstream; give both")
            self.check_name(name, "proxy name")
            enabled = spec.get("enabled", True)
            if not isinstance(enabled, bool):
                raise InvalidFault(f"populate entry {name!r}: enabled must be true or false, got {enabled!r}")
            listen = _net.parse_address(spec.get("listen", f"{_net.LOOPBACK}:0"), f"proxy {name!r} listen")
            checked.append((name, _net.parse_address(upstream, f"proxy {name!r} upstream"), listen, enabled))
        with self._lock:
            result: list[Proxy] = []
            created: list[str] = []
            replaced: list[tuple[Proxy, str, bool]] = []
            try:
                for name, upstream, listen, enabled in checked:
                    existing = self._proxies.get(name)
                    if existing is not None and self.matches(name, listen, upstream):
                        existing.update(enabled=enabled)
                        result.append(existing)
                        continue
                    if existing is not None:
                        replaced.append((existing, existing.to_json()["listen"], name in self._pinned))
                        self.remove(name)
                    result.append(self.create(name, upstream, listen, enabled=enabled))
                    created.append(name)
            except BaseException:
                for name in created:
                    self.remove(name)
                for old, old_listen, pinned in replaced:
                    gate = {"owner_only": old.owner_only, "refuse_as": old.refuse_as}
                    self.create(old.name, old.upstream, old_listen, enabled=old.enabled, pinned=pinned, **gate)
                raise
        return result

    def matches(self, name: str, listen: _net.Address | str, upstream: _net.Address | str) -> bool:
        """Whether proxy `name` exists with this upstream and listen (port 0 matches any port)."""
        with self._lock:
            proxy = self._proxies.get(name)
        if proxy is None:
            return False
        wanted_listen = _net.parse_address(listen, "listen")
        current = proxy.to_json()["listen"]
        listen_ok = wanted_listen[1] == 0 or _net.format_address(wanted_listen) == current
        return listen_ok and _net.parse_address(upstream, "upstream") == proxy.upstream

    def set_seed(self, seed: int) -> None:
        """Replay from here: every proxy (and every proxy created later) draws from streams of `seed`."""
        for proxy in self.proxies():
            proxy.set_seed(seed)
        self.seed = seed

    def reset(self) -> None:
        """Enable every proxy and remove every toxic and partition."""
        for proxy in self.proxies():
            proxy.reset()
