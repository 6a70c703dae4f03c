"""`GuardedHandler`: what K2's two HTTP APIs (fault proxy, schema registry) share against hostile clients.

- A request gets `REQUEST_DEADLINE` seconds from its first byte to its last, and an idle keep-alive
  connection `IDLE_TIMEOUT`: a slow or silent client cannot pin a thread.
- Bodies are bounded (`MAX_BODY`, else 413) and read whole, with Content-Length or chunked
  (a chunked body is read, never mistaken for the next request).
- `caller_uid()` is the uid owning the client's socket (k2.httpsafe.peer), looked up once per connection.
- What `http.server` refuses by itself (a method with no handler, a malformed request line, headers too
  long) is answered in the API's own JSON error shape (`error_body`), not its HTML page; a method the API
  does not serve is 405 with the methods it does (it was 501, a 5xx for a client's mistake).
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler

from k2.httpsafe.peer import allowed_uids, socket_owner

__all__ = ["BodyError", "GuardedHandler"]

_DIGITS = re.compile(r"[0-9]{1,12}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,8}")


class BodyError(Exception):
    """The request body cannot be read; `status` is the HTTP answer (400, 408, 411, 413, 501)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _DeadlineReader(io.RawIOBase):
    """The connection's read side: idle timeout before a request's first byte, then a hard deadline."""

    def __init__(self, sock: socket.socket, idle: float, budget: float) -> None:
        self._sock, self._idle, self._budget = sock, idle, budget
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.deadline is None:
            timeout = self._idle
        else:
            timeout = self.deadline - time.monotonic()
            if timeout <= 0:
                raise TimeoutError("request not received in time")
        self._sock.settimeout(timeout)
        count = self._sock.recv_into(buffer)
        if self.deadline is None:
            self.deadline = time.monotonic() + self._budget
        return count


class GuardedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # What a request line too broken to name its version is answered in: with http.server's "HTTP/0.9" the
    # error went out as a bare body, without the status line a client needs to see it was refused.
    default_request_version = "HTTP/1.1"
    IDLE_TIMEOUT = 30.0
    REQUEST_DEADLINE = 10.0
    MAX_BODY = 1 << 20

    _reader: _DeadlineReader
    _caller: int | bool | None = False  # False: not looked up yet
    _allow = ""  # the methods served, for the Allow header of a 405

    def setup(self) -> None:
        super().setup()
        self._reader = _DeadlineReader(self.connection, self.IDLE_TIMEOUT, self.REQUEST_DEADLINE)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.deadline = None  # the deadline starts with the next request's first byte
        super().handle_one_request()

    # --- errors http.server raises by itself, in the API's shape -----------------------------------

    def error_body(self, status: int, message: str) -> dict[str, object]:
        """The JSON of an error answer; an API whose clients expect another shape overrides it."""
        return {"error": message, "status": status}

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if not hasattr(self, f"do_{self.command}"):
            served = ", ".join(sorted(name[3:] for name in dir(self) if name.startswith("do_")))
            self._allow = served
            self.send_error(
                HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command[:20]!r} is not served here: use {served}"
            )
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """`http.server`'s error answer as JSON; the connection is closed after it, as there."""
        text = message or self.responses.get(code, ("error",))[0]
        self.log_error("code %d, message %s", code, text)
        payload = json.dumps(self.error_body(code, text)).encode() + b"\n"
        self.send_response(code)
        self.send_header("Connection", "close")
        self.close_connection = True
        if self._allow:
            self.send_header("Allow", self._allow)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    # --- who is calling ----------------------------------------------------------------------------

    def caller_uid(self) -> int | None:
        if self._caller is False:
            self._caller = socket_owner(self.connection)
        return self._caller  # type: ignore[return-value]

    def caller_refusal(self) -> str | None:
        """Why this caller may not change anything here, or None when it may."""
        uid = self.caller_uid()
        if uid is None:
            return "cannot tell which user owns this connection (only loopback TCP clients are known)"
        if uid not in allowed_uids():
            return f"uid {uid} may not change this service: only its owner (uid {os.geteuid()}) and root may"
        return None

    # --- the body ----------------------------------------------------------------------------------

    def read_body(self) -> bytes:
        """The whole request body, or BodyError. On any error the connection is closed afterwards."""
        try:
            return self._read_body()
        except BodyError:
            self.close_connection = True
            raise
        except TimeoutError:
            self.close_connection = True
            raise BodyError(HTTPStatus.REQUEST_TIMEOUT, "request body not received in time") from None
        except OSError as exc:
            self.close_connection = True
            raise BodyError(HTTPStatus.BAD_REQUEST, f"request body unreadable: {exc}") from None

    def _read_body(self) -> bytes:
        encoding = (self.headers.get("Transfer-Encoding") or "").strip().lower()
        length_header = self.headers.get("Content-Length")
        if encoding:
            if encoding != "chunked":
                raise BodyError(HTTPStatus.NOT_IMPLEMENTED, f"Transfer-Encoding {encoding!r} is not supported")
            if length_header is not None:
                raise BodyError(HTTPStatus.BAD_REQUEST, "both Transfer-Encoding and Content-Length given; send one")
            return self._read_chunked()
        if length_header is None:
            return b""
        text = length_header.strip()
        if not _DIGITS.fullmatch(text):
            raise BodyError(HTTPStatus.BAD_REQUEST, f"Content-Length {text!r} is not a number of bytes")
        length = int(text)
        if length > self.MAX_BODY:
            raise BodyError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body of {length} bytes is over {self.MAX_BODY}"
            )
        body = self.rfile.read(length)
        if len(body) != length:
            raise BodyError(HTTPStatus.BAD_REQUEST, f"request body ended after {len(body)} of {length} bytes")
        return body

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            size_text = line.split(b";", 1)[0].strip()
            if not line.endswith(b"\n") or not _HEX.fullmatch(size_text):
                raise BodyError(HTTPStatus.BAD_REQUEST, f"bad chunk size line {line[:40]!r}")
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > self.MAX_BODY:
                raise BodyError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"chunked request body is over {self.MAX_BODY}")
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BodyError(HTTPStatus.BAD_REQUEST, "chunked request body ended mid-chunk")
            parts.append(chunk)
        for _ in range(64):  # trailers, up to the empty line
            line = self.rfile.readline(8192)
            if line in (b"\r\n", b"\n"):
                return b"".join(parts)
            if not line.endswith(b"\n"):
                break
        raise BodyError(HTTPStatus.BAD_REQUEST, "chunked request body has no proper end")
