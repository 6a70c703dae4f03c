"""Toxiproxy's HTTP API (v2 paths, JSON shapes and status codes) over a `ProxyServer`.

Errors are `{"error": "...", "status": N}` like Toxiproxy's: 404 for an unknown proxy or toxic, 409 when
a name or port is taken, 400 for a bad body or bad fault parameters, 413 for a body over the limit, 408
for one that does not arrive in time. Every value is checked here, before the proxy model is called.

Who may call: anyone may read (GET); only the user the proxy runs as, and root, may change anything
(the uid owning the client's loopback socket, see k2.httpsafe.peer): another user gets 403. Requests from
browsers (User-Agent `Mozilla/...`) get 403 too, as in Toxiproxy, so a web page cannot reach this API.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import k2
from k2.chaos.errors import ChaosError, InvalidFault, UnsafeTarget
from k2.chaos.proxy import _net
from k2.chaos.proxy.errors import AlreadyExists, NotFound
from k2.chaos.proxy.toxic import create_toxic
from k2.httpsafe import BodyError, GuardedHandler, JsonError, parse_json

if TYPE_CHECKING:
    from k2.chaos.proxy.proxy import Proxy
    from k2.chaos.proxy.server import ProxyServer

log = logging.getLogger(__name__)

# The Toxiproxy API version spoken, with K2's own version as semver build metadata: version checks that
# compare against Toxiproxy releases see 2.12.0, and a person sees which server answered.
TOXIPROXY_API = "2.12.0"
VERSION = f"{TOXIPROXY_API}+k2.{k2.__version__}"
Result = tuple[int, Any]
_READ_ONLY = frozenset({"GET", "HEAD"})


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _status_for(exc: ChaosError) -> int:
    if isinstance(exc, NotFound):
        return HTTPStatus.NOT_FOUND
    if isinstance(exc, AlreadyExists):
        return HTTPStatus.CONFLICT
    if isinstance(exc, InvalidFault | UnsafeTarget):
        return HTTPStatus.BAD_REQUEST
    return HTTPStatus.INTERNAL_SERVER_ERROR


def _bad(message: str) -> ApiError:
    return ApiError(HTTPStatus.BAD_REQUEST, f"bad request body: {message}")


def _text(spec: dict[str, Any], field: str, *, required: bool = False) -> str | None:
    value = spec.get(field)
    if value is None or value == "":
        if required:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"missing required field: {field}")
        return None
    if not isinstance(value, str):
        raise _bad(f"{field} must be a string, got {json.dumps(value)[:60]}")
    return value


def _flag(spec: dict[str, Any], field: str) -> bool | None:
    """A strict JSON boolean (Toxiproxy's Go decoder refuses "false" as a string too)."""
    value = spec.get(field)
    if value is not None and not isinstance(value, bool):
        raise _bad(f"{field} must be true or false, got {json.dumps(value)[:60]}")
    return value


class Api:
    """The routes, as plain methods from (path params, JSON body) to (status, JSON result)."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        p, t = r"(?P<proxy>[^/]+)", r"(?P<toxic>[^/]+)"
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Result]]] = [
            ("GET", re.compile(r"/proxies"), self.proxy_index),
            ("POST", re.compile(r"/proxies"), self.proxy_create),
            ("POST", re.compile(r"/populate"), self.populate),
            ("POST", re.compile(r"/reset"), self.reset),
            ("GET", re.compile(r"/version"), self.version),
            ("GET", re.compile(r"/seed"), self.seed_show),
            ("POST", re.compile(r"/seed"), self.seed_set),
            ("GET", re.compile(rf"/proxies/{p}"), self.proxy_show),
            ("POST|PATCH", re.compile(rf"/proxies/{p}"), self.proxy_update),
            ("DELETE", re.compile(rf"/proxies/{p}"), self.proxy_delete),
            ("GET", re.compile(rf"/proxies/{p}/toxics"), self.toxic_index),
            ("POST", re.compile(rf"/proxies/{p}/toxics"), self.toxic_create),
            ("GET", re.compile(rf"/proxies/{p}/toxics/{t}"), self.toxic_show),
            ("POST|PATCH", re.compile(rf"/proxies/{p}/toxics/{t}"), self.toxic_update),
            ("DELETE", re.compile(rf"/proxies/{p}/toxics/{t}"), self.toxic_delete),
        ]

    def dispatch(self, method: str, path: str, body: bytes) -> Result:
        path = path.split("?", 1)[0].rstrip("/") or "/"
        matched_path = False
        for methods, pattern, handler in self.routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            matched_path = True
            if method not in methods.split("|"):
                continue
            try:
                params = {k: unquote(v, errors="strict") for k, v in match.groupdict().items()}
                return handler(body=body, **params)
            except UnicodeDecodeError:
                return self._error(HTTPStatus.BAD_REQUEST, f"path {path[:80]!r} is not UTF-8 once decoded")
            except ApiError as exc:
                return self._error(exc.status, str(exc))
            except ChaosError as exc:
                return self._error(_status_for(exc), str(exc))
        status = HTTPStatus.METHOD_NOT_ALLOWED if matched_path else HTTPStatus.NOT_FOUND
        return self._error(status, f"no route for {method} {path[:200]}")

    @staticmethod
    def _error(status: int, message: str) -> Result:
        return status, {"error": message, "status": int(status)}

    @staticmethod
    def _json(body: bytes, kind: type | tuple[type, ...] = dict) -> Any:
        try:
            value = parse_json(body or b"{}")
        except JsonError as exc:
            raise _bad(str(exc)) from None
        if not isinstance(value, kind):
            raise _bad("not the JSON shape this endpoint takes")
        return value

    # --- checks shared by create, update and populate -----------------------------------------------

    def _listen(self, text: str | None, what: str) -> tuple[_net.Address, str | None]:
        """(address, note): a wildcard listen is served on loopback, and the note says so."""
        address = _net.parse_address(text or f"{_net.LOOPBACK}:0", what, wildcard=True)
        note = None
        if text and _net.is_wildcard(text):
            note = f"listen {text} is served on {_net.LOOPBACK} only: K2's proxy never listens beyond loopback"
        if 0 < address[1] < 1024:
            raise _bad(f"{what} port {address[1]} is below 1024; use 1024..65535 (0 = pick a free port)")
        return address, note

    def _check_upstream(self, name: str, upstream: _net.Address, listen: _net.Address | None) -> None:
        """No proxy may forward into itself, into another proxy, or into this API (a loop, or a way around
        the API's caller check). `listen` is where proxy `name` will listen (None or port 0: not known yet)."""
        taken = {
            _net.parse_address(p.to_json()["listen"], "listen"): repr(p.name)
            for p in self.server.proxies()
            if p.name != name
        }
        if listen is not None and listen[1] != 0:
            taken[listen] = "itself"
        taken[self.server.api_address] = "the proxy API"
        if upstream in taken:
            raise _bad(
                f"proxy {name!r}: upstream {_net.format_address(upstream)} is the listen address of "
                f"{taken[upstream]}, which would loop; point upstream at the service"
            )

    def _check_not_pinned(self, name: str, what: str) -> None:
        if self.server.is_pinned(name):
            raise ApiError(
                HTTPStatus.FORBIDDEN,
                f"proxy {name!r} is one of the stack's own proxies: it cannot be {what} through the API "
                "(toxics, enabled and /reset still work); to test another service, create a proxy of your own",
            )

    def _proxy_spec(self, spec: Any, where: str) -> dict[str, Any]:
        """A create/populate entry checked whole: name, upstream, listen (+ note) and enabled."""
        if not isinstance(spec, dict):
            raise _bad(f"{where} must be a JSON object")
        name = _text(spec, "name", required=True)
        upstream_text = _text(spec, "upstream", required=True)
        assert name is not None and upstream_text is not None
        self.server.check_name(name, "proxy name")
        upstream = _net.parse_address(upstream_text, f"proxy {name!r} upstream")
        if upstream[1] == 0:
            raise _bad(f"proxy {name!r} upstream {upstream_text!r} has port 0; give the service's port")
        listen, note = self._listen(_text(spec, "listen"), f"proxy {name!r} listen")
        enabled = _flag(spec, "enabled")
        return {"name": name, "upstream": upstream, "listen": listen, "enabled": enabled is not False, "note": note}

    @staticmethod
    def _shown(proxy: Proxy, note: str | None) -> dict[str, Any]:
        shown = proxy.to_json()
        if note:
            shown["warning"] = note
        return shown

    # --- proxies --------------------------------------------------------------------------------

    def proxy_index(self, body: bytes) -> Result:
        return HTTPStatus.OK, {p.name: p.to_json() for p in self.server.proxies()}

    def proxy_create(self, body: bytes) -> Result:
        spec = self._proxy_spec(self._json(body), "the proxy")
        self._check_upstream(spec["name"], spec["upstream"], spec["listen"])
        proxy = self.server.create(spec["name"], spec["upstream"], spec["listen"], enabled=spec["enabled"])
        return HTTPStatus.CREATED, self._shown(proxy, spec["note"])

    def populate(self, body: bytes) -> Result:
        """All entries are checked before any proxy is touched; then the server applies them as one."""
        specs = self._json(body or b"[]", (list, dict))
        if isinstance(specs, dict):
            specs = specs.get("proxies")
        if not isinstance(specs, list):
            raise _bad("expected a JSON list of proxies")
        checked = [self._proxy_spec(spec, f"populate entry {i}") for i, spec in enumerate(specs)]
        names = [s["name"] for s in checked]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise _bad(f"populate names {', '.join(map(repr, duplicates))} more than once; give each proxy once")
        for spec in checked:
            self._check_upstream(spec["name"], spec["upstream"], spec["listen"])
            if self.server.is_pinned(spec["name"]) and not self.server.matches(
                spec["name"], spec["listen"], spec["upstream"]
            ):
                self._check_not_pinned(spec["name"], "replaced")
        proxies = self.server.populate([{k: s[k] for k in ("name", "upstream", "listen", "enabled")} for s in checked])
        shown = [self._shown(p, s["note"]) for p, s in zip(proxies, checked, strict=True)]
        return HTTPStatus.CREATED, {"proxies": shown}

    def reset(self, body: bytes) -> Result:
        self.server.reset()
        return HTTPStatus.NO_CONTENT, None

    def version(self, body: bytes) -> Result:
        return HTTPStatus.OK, {"version": VERSION}

    def seed_show(self, body: bytes) -> Result:
        return HTTPStatus.OK, {"seed": self.server.seed}

    def seed_set(self, body: bytes) -> Result:
        """K2's own: the seed every toxicity roll and jitter draws from (a chaos session sets it)."""
        seed = self._json(body).get("seed")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise ApiError(HTTPStatus.BAD_REQUEST, "bad request body: 'seed' must be an integer in [0, 2**64)")
        self.server.set_seed(seed)
        return HTTPStatus.OK, {"seed": seed}

    def proxy_show(self, body: bytes, proxy: str) -> Result:
        return HTTPStatus.OK, self.server.get(proxy).to_json()

    def proxy_update(self, body: bytes, proxy: str) -> Result:
        spec = self._json(body)
        target = self.server.get(proxy)
        enabled = _flag(spec, "enabled")
        listen_text, upstream_text = _text(spec, "listen"), _text(spec, "upstream")
        listen, note = self._listen(listen_text, f"proxy {proxy!r} listen") if listen_text else (None, None)
        upstream = _net.parse_address(upstream_text, f"proxy {proxy!r} upstream") if upstream_text else None
        current = target.to_json()
        current_listen = _net.parse_address(current["listen"], "listen")
        moves = listen is not None and listen[1] not in (0, current_listen[1])
        repoints = upstream is not None and upstream != target.upstream
        if moves or repoints:
            self._check_not_pinned(proxy, "re-pointed")
        if upstream is not None and upstream[1] == 0:
            raise _bad(f"proxy {proxy!r} upstream {upstream_text!r} has port 0; give the service's port")
        self._check_upstream(proxy, upstream or target.upstream, listen if moves else current_listen)
        target.update(listen=listen if moves else None, upstream=upstream, enabled=enabled)
        return HTTPStatus.OK, self._shown(target, note)

    def proxy_delete(self, body: bytes, proxy: str) -> Result:
        self.server.get(proxy)
        self._check_not_pinned(proxy, "deleted")
        self.server.remove(proxy)
        return HTTPStatus.NO_CONTENT, None

    # --- toxics ---------------------------------------------------------------------------------

    def toxic_index(self, body: bytes, proxy: str) -> Result:
        return HTTPStatus.OK, [t.to_json() for t in self.server.get(proxy).toxics()]

    def toxic_create(self, body: bytes, proxy: str) -> Result:
        target = self.server.get(proxy)
        spec = self._json(body)
        attributes = spec.get("attributes") or {}
        if not isinstance(attributes, dict) or not isinstance(spec.get("type"), str):
            raise _bad("need a string 'type' and an 'attributes' map")
        name = _text(spec, "name")
        if name is not None:
            self.server.check_name(name, "toxic name")
        stream = _text(spec, "stream") or "downstream"
        clients = spec.get("clients")
        if clients is not None and not (isinstance(clients, list) and all(isinstance(c, str) for c in clients)):
            raise _bad("clients must be a list of client labels (strings)")
        toxicity = spec.get("toxicity")
        toxic = create_toxic(
            spec["type"],
            name=name,
            stream=stream.lower(),
            toxicity=1.0 if toxicity is None else toxicity,  # Toxiproxy: null or absent = always
            clients=clients,
            **attributes,
        )
        return HTTPStatus.OK, target.install(toxic).to_json()

    def toxic_show(self, body: bytes, proxy: str, toxic: str) -> Result:
        return HTTPStatus.OK, self.server.get(proxy).toxic(toxic).to_json()

    def toxic_update(self, body: bytes, proxy: str, toxic: str) -> Result:
        spec = self._json(body)
        attributes = spec.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise _bad("'attributes' must be a map")
        updated = self.server.get(proxy).update_toxic(toxic, toxicity=spec.get("toxicity"), **attributes)
        return HTTPStatus.OK, updated.to_json()

    def toxic_delete(self, body: bytes, proxy: str, toxic: str) -> Result:
        self.server.get(proxy).remove_toxic(toxic)
        return HTTPStatus.NO_CONTENT, None


def make_handler(server: ProxyServer) -> type[GuardedHandler]:
    """A request handler class bound to `server` (http.server wants a class, not an instance)."""
    api = Api(server)

    class Handler(GuardedHandler):
        server_version = f"k2-proxy/{k2.__version__}"

        def _handle(self) -> None:
            status, result = self._answer()
            if status >= 500:
                self.close_connection = True
            payload = b"" if result is None else json.dumps(result).encode() + b"\n"
            self.send_response(status)
            if result is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if payload and self.command != "HEAD":
                self.wfile.write(payload)

        def _answer(self) -> Result:
            try:
                body = self.read_body()
            except BodyError as exc:
                return Api._error(exc.status, str(exc))
            if self.headers.get("User-Agent", "").startswith("Mozilla/"):
                return HTTPStatus.FORBIDDEN, {"error": "User agent not allowed", "status": 403}
            if self.command not in _READ_ONLY:
                refusal = self.caller_refusal()
                if refusal is not None:
                    log.warning("proxy API: refused %s %s: %s", self.command, self.path[:200], refusal)
                    return Api._error(HTTPStatus.FORBIDDEN, refusal)
            try:
                return api.dispatch(self.command, self.path, body)
            except Exception as exc:  # a bug: answer 500 rather than drop the connection
                log.exception("proxy API: %s %s failed", self.command, self.path[:200])
                return Api._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}")

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("proxy API %s: " + format, self.client_address[0], *args)

    return Handler
