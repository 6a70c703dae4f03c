"""HTTP front of the registry: Confluent Schema Registry REST paths over stdlib http.server.

Why stdlib: clients cache schema ids, so a registry sees a handful of requests per producer start,
not per message; ThreadingHTTPServer with HTTP/1.1 keep-alive is ample (see
benchmarks/bench_registry.py) and adds no dependency to the system under test. One thread per
connection; the store lock serialises the state.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from k2.httpsafe import BodyError, GuardedHandler, JsonError, parse_json
from k2.platform.errors import BadRequest, Forbidden, RegistryError, RequestProblem, RouteNotFound
from k2.platform.registry.service import SchemaRegistry

__all__ = ["CONTENT_TYPE", "RegistryHTTPServer"]

log = logging.getLogger(__name__)
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# Methods that change the registry: only its owner (the user it runs as) and root may call them.
_MUTATING = frozenset({"POST", "PUT", "DELETE", "PATCH"})
# POSTs that only read: a lookup and the compatibility checks.
_READ_POSTS = (re.compile(r"^/subjects/[^/]+/?$"), re.compile(r"^/compatibility/"))

_Handler = Callable[[SchemaRegistry, dict[str, str], dict[str, str], Any], Any]
_ROUTES: list[tuple[str, re.Pattern[str], _Handler]] = []


def _route(method: str, pattern: str) -> Callable[[_Handler], _Handler]:
    def register(func: _Handler) -> _Handler:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        _ROUTES.append((method, re.compile(f"^{regex}/?$"), func))
        return func

    return register


def _flag(query: dict[str, str], name: str) -> bool:
    return query.get(name, "false").strip().lower() == "true"


def _paged(items: list[Any], query: dict[str, str]) -> list[Any]:
    try:
        offset, limit = int(query.get("offset", 0)), int(query.get("limit", -1))
    except ValueError:
        raise BadRequest("offset and limit must be integers") from None
    items = items[max(offset, 0) :]
    return items if limit < 0 else items[:limit]


# fmt: off
@_route("GET", "")
def _root(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return {}

@_route("GET", "/subjects")
def _subjects(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    found = reg.subjects(prefix=q.get("subjectPrefix", ""), deleted=_flag(q, "deleted"),
                         deleted_only=_flag(q, "deleted_only"))
    return _paged(found, q)

@_route("POST", "/subjects/{subject}/versions")
def _register(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return reg.register(p["subject"], body, normalize=_flag(q, "normalize"))

@_route("GET", "/subjects/{subject}/versions")
def _versions(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    found = reg.versions(p["subject"], deleted=_flag(q, "deleted"), deleted_only=_flag(q, "deleted_only"))
    return _paged(found, q)

@_route("POST", "/subjects/{subject}")
def _lookup(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return reg.lookup(p["subject"], body, normalize=_flag(q, "normalize"), deleted=_flag(q, "deleted"))

@_route("DELETE", "/subjects/{subject}")
def _delete_subject(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return reg.delete_subject(p["subject"], permanent=_flag(q, "permanent"))

@_route("GET", "/subjects/{subject}/versions/{version}")
def _version(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return reg.version(p["subject"], p["version"], deleted=_flag(q, "deleted"))

@_route("GET", "/subjects/{subject}/versions/{version}/schema")
def _version_schema(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return _Raw(reg.version(p["subject"], p["version"], deleted=_flag(q, "deleted"))["schema"])

@_route("GET", "/subjects/{subject}/versions/{version}/referencedby")
def _referenced_by(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    reg.version(p["subject"], p["version"])  # 404s as Confluent does; no references exist here
    return []

@_route("DELETE", "/subjects/{subject}/versions/{version}")
def _delete_version(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return reg.delete_version(p["subject"], p["version"], permanent=_flag(q, "permanent"))

@_route("GET", "/schemas/ids/{id}")
def _schema(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return reg.schema_by_id(p["id"])

@_route("GET", "/schemas/ids/{id}/schema")
def _schema_raw(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return _Raw(reg.raw_schema_by_id(p["id"]))

@_route("GET", "/schemas/ids/{id}/subjects")
def _schema_subjects(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return _paged(reg.subjects_for_id(p["id"], deleted=_flag(q, "deleted")), q)

@_route("GET", "/schemas/ids/{id}/versions")
def _schema_versions(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return _paged(reg.versions_for_id(p["id"], deleted=_flag(q, "deleted")), q)

@_route("GET", "/schemas/guids/{guid}")
def _schema_guid(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return reg.schema_by_guid(p["guid"])

@_route("GET", "/schemas/types")
def _types(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return ["AVRO"]

@_route("POST", "/compatibility/subjects/{subject}/versions/{version}")
def _compat_one(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return reg.test_compatibility(p["subject"], p["version"], body, normalize=_flag(q, "normalize"),
                                  verbose=_flag(q, "verbose"))

@_route("POST", "/compatibility/subjects/{subject}/versions")
def _compat_all(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return reg.test_compatibility(p["subject"], None, body, normalize=_flag(q, "normalize"),
                                  verbose=_flag(q, "verbose"))

@_route("GET", "/config")
def _get_global(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return reg.get_config(None)

@_route("PUT", "/config")
def _put_global(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return reg.set_config(None, body)

@_route("DELETE", "/config")
def _delete_global(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return reg.delete_config(None)

@_route("GET", "/config/{subject}")
def _get_config(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return reg.get_config(p["subject"], default_to_global=_flag(q, "defaultToGlobal"))

@_route("PUT", "/config/{subject}")
def _put_config(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return reg.set_config(p["subject"], body)

@_route("DELETE", "/config/{subject}")
def _delete_config(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return reg.delete_config(p["subject"])

@_route("GET", "/mode")
def _mode(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return {"mode": "READWRITE"}

@_route("GET", "/mode/{subject}")
def _subject_mode(reg: SchemaRegistry, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
    return {"mode": "READWRITE"}
# fmt: on


class _Raw(str):
    """A handler result sent as-is (a raw schema), not JSON-encoded again."""


class _RequestHandler(GuardedHandler):
    server_version = "k2-schema-registry"
    IDLE_TIMEOUT = 60.0  # idle keep-alive connections give their thread back after this
    MAX_BODY = 4 << 20
    disable_nagle_algorithm = True  # headers and body go out as separate writes; don't wait for an ACK
    server: RegistryHTTPServer

    def error_body(self, status: int, message: str) -> dict[str, object]:
        return {"error_code": status, "message": message}  # Confluent's shape, as every other answer here

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        try:
            status, payload = 200, self._handle(method)
        except RegistryError as exc:
            level = logging.WARNING if exc.http_status >= 500 else logging.DEBUG
            log.log(level, "%s %s -> %d %d %s", method, self.path, exc.http_status, exc.error_code, exc.detail)
            status, payload = exc.http_status, exc.body()
        except Exception as exc:  # a bug must still answer, or the client hangs until its timeout
            log.exception("%s %s failed", method, self.path)
            status, payload = 500, {"error_code": 500, "message": f"Internal Server Error: {type(exc).__name__}"}
            self.close_connection = True
        data = (payload if isinstance(payload, _Raw) else json.dumps(payload)).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> Any:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        body = self._body()
        path = parts.path.rstrip("/")
        if method in _MUTATING and not any(p.match(path) for p in _READ_POSTS if method == "POST"):
            refusal = self.caller_refusal()
            if refusal is not None:
                raise Forbidden(refusal)
        allowed = False
        for route_method, pattern, func in _ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            if route_method != method:
                allowed = True
                continue
            try:
                params = {k: unquote(v, errors="strict") for k, v in match.groupdict().items()}
            except UnicodeDecodeError:
                raise BadRequest("the path is not UTF-8 once percent-decoded") from None
            return func(self.server.registry, params, query, body)
        if allowed:
            raise _MethodNotAllowed("HTTP 405 Method Not Allowed")
        raise RouteNotFound("HTTP 404 Not Found")

    def _body(self) -> Any:
        try:
            raw = self.read_body()
        except BodyError as exc:
            raise RequestProblem(exc.status, str(exc)) from None
        if not raw:
            return None
        try:
            return parse_json(raw)
        except JsonError as exc:
            raise BadRequest(f"Unrecognized JSON in the request body: {exc}") from None

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _MethodNotAllowed(RegistryError):
    http_status, error_code = 405, 405
    default_remedy = "check the HTTP method against the Confluent Schema Registry REST API"


class RegistryHTTPServer(ThreadingHTTPServer):
    """The HTTP server bound to one SchemaRegistry; binds in the constructor so `port` is known."""

    daemon_threads = True
    block_on_close = False  # idle keep-alive clients must not delay a SIGTERM stop by the handler timeout
    allow_reuse_address = True

    def __init__(self, registry: SchemaRegistry, host: str = "127.0.0.1", port: int = 0) -> None:
        self.registry = registry
        super().__init__((host, port), _RequestHandler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start_background(self) -> RegistryHTTPServer:
        """Serve on a daemon thread (in-process use: tests, benchmarks)."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="schema-registry", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.server_close()
