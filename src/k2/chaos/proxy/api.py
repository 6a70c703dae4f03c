"""Toxiproxy's HTTP API (v2 paths, JSON shapes and status codes) over a `ProxyServer`.

Errors are `{"error": "...", "status": N}` like Toxiproxy's: 404 for an unknown proxy or toxic, 409 when
a name is taken, 400 for a bad body or bad fault parameters. Requests from browsers (User-Agent
`Mozilla/...`) get 403, as in Toxiproxy, so a web page cannot reach this loopback API by cross-site
request.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import k2
from k2.chaos.errors import ChaosError, InvalidFault, UnsafeTarget
from k2.chaos.proxy.errors import AlreadyExists, NotFound
from k2.chaos.proxy.toxic import create_toxic

if TYPE_CHECKING:
    from k2.chaos.proxy.server import ProxyServer

log = logging.getLogger(__name__)

VERSION = f"k2-{k2.__version__}"
Result = tuple[int, Any]


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
            params = {k: unquote(v) for k, v in match.groupdict().items()}
            try:
                return handler(body=body, **params)
            except ApiError as exc:
                return exc.status, {"error": str(exc), "status": exc.status}
            except ChaosError as exc:
                status = _status_for(exc)
                return status, {"error": str(exc), "status": status}
        status = HTTPStatus.METHOD_NOT_ALLOWED if matched_path else HTTPStatus.NOT_FOUND
        return status, {"error": f"no route for {method} {path}", "status": int(status)}

    @staticmethod
    def _json(body: bytes, kind: type | tuple[type, ...] = dict) -> Any:
        try:
            value = json.loads(body or b"{}")
        except ValueError as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"bad request body: {exc}") from None
        if not isinstance(value, kind):
            raise ApiError(HTTPStatus.BAD_REQUEST, "bad request body: not the JSON shape this endpoint takes")
        return value

    # --- proxies --------------------------------------------------------------------------------

    def proxy_index(self, body: bytes) -> Result:
        return HTTPStatus.OK, {p.name: p.to_json() for p in self.server.proxies()}

    def proxy_create(self, body: bytes) -> Result:
        spec = self._json(body)
        for field in ("name", "upstream"):
            if not spec.get(field):
                raise ApiError(HTTPStatus.BAD_REQUEST, f"missing required field: {field}")
        if not isinstance(spec.get("enabled", True), bool):
            raise ApiError(HTTPStatus.BAD_REQUEST, "bad request body: enabled must be true or false")
        proxy = self.server.create(
            spec["name"], spec["upstream"], spec.get("listen") or "127.0.0.1:0", enabled=spec.get("enabled", True)
        )
        return HTTPStatus.CREATED, proxy.to_json()

    def populate(self, body: bytes) -> Result:
        specs = self._json(body or b"[]", (list, dict))
        if isinstance(specs, dict):
            specs = specs.get("proxies")
        if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
            raise ApiError(HTTPStatus.BAD_REQUEST, "bad request body: expected a JSON list of proxies")
        proxies = self.server.populate(specs)
        return HTTPStatus.CREATED, {"proxies": [p.to_json() for p in proxies]}

    def reset(self, body: bytes) -> Result:
        self.server.reset()
        return HTTPStatus.NO_CONTENT, None

    def version(self, body: bytes) -> Result:
        return HTTPStatus.OK, {"version": VERSION}

    def proxy_show(self, body: bytes, proxy: str) -> Result:
        return HTTPStatus.OK, self.server.get(proxy).to_json()

    def proxy_update(self, body: bytes, proxy: str) -> Result:
        spec = self._json(body)
        target = self.server.get(proxy)
        enabled = spec.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            raise ApiError(HTTPStatus.BAD_REQUEST, "bad request body: enabled must be true or false")
        target.update(listen=spec.get("listen"), upstream=spec.get("upstream"), enabled=enabled)
        return HTTPStatus.OK, target.to_json()

    def proxy_delete(self, body: bytes, proxy: str) -> Result:
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
            raise ApiError(HTTPStatus.BAD_REQUEST, "bad request body: need a string 'type' and an 'attributes' map")
        toxic = create_toxic(
            spec["type"],
            name=spec.get("name"),
            stream=spec.get("stream") or "downstream",
            toxicity=spec.get("toxicity", 1.0),
            clients=spec.get("clients"),
            **attributes,
        )
        return HTTPStatus.OK, target.install(toxic).to_json()

    def toxic_show(self, body: bytes, proxy: str, toxic: str) -> Result:
        return HTTPStatus.OK, self.server.get(proxy).toxic(toxic).to_json()

    def toxic_update(self, body: bytes, proxy: str, toxic: str) -> Result:
        spec = self._json(body)
        attributes = spec.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise ApiError(HTTPStatus.BAD_REQUEST, "bad request body: 'attributes' must be a map")
        updated = self.server.get(proxy).update_toxic(toxic, toxicity=spec.get("toxicity"), **attributes)
        return HTTPStatus.OK, updated.to_json()

    def toxic_delete(self, body: bytes, proxy: str, toxic: str) -> Result:
        self.server.get(proxy).remove_toxic(toxic)
        return HTTPStatus.NO_CONTENT, None


def make_handler(server: ProxyServer) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to `server` (http.server wants a class, not an instance)."""
    api = Api(server)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Toxiproxy clients expect
        server_version = f"k2-proxy/{k2.__version__}"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status: int
            result: Any
            if self.headers.get("User-Agent", "").startswith("Mozilla/"):
                status, result = HTTPStatus.FORBIDDEN, {"error": "User agent not allowed", "status": 403}
            else:
                try:
                    status, result = api.dispatch(self.command, self.path, body)
                except Exception as exc:  # a bug: answer 500 rather than drop the connection
                    log.exception("proxy API: %s %s failed", self.command, self.path)
                    status, result = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(exc), "status": 500}
            payload = b"" if result is None else json.dumps(result).encode() + b"\n"
            self.send_response(status)
            if result is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload:
                self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("proxy API %s: " + format, self.client_address[0], *args)

    return Handler
