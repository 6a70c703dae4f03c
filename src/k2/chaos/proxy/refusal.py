"""How an owner-only proxy turns another user's connection away: a TCP reset, or an HTTP 403.

A reset tells the caller nothing ("connection reset by peer", which HTTP clients retry); in front of an
HTTP service (the schema registry) the refused caller gets what the service itself answers another user:
403 with a JSON error naming who may connect. Not a byte reaches the service either way.

The answer is sent at accept and the connection half-closed, then whatever the client sends is read and
dropped until it closes its end ("lingering close"): closing with its request still unread would make the
kernel send a reset that can destroy the answer before the client reads it. The drain is bounded in
bytes and time, and so is the number of refusals lingering at once (beyond it, a plain reset).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

from k2.chaos.proxy import _net
from k2.chaos.proxy.reactor import Reactor, Timer, Watch

__all__ = ["KINDS", "HttpRefusal", "http_forbidden"]

KINDS = ("reset", "http")  # the config's "refuse_as": how a refused caller is answered
MAX_LINGERING = 64  # refusals draining at once; more callers than this are reset outright
_DRAIN_SECONDS = 5.0
_DRAIN_BYTES = 16 << 20


def http_forbidden(reason: str) -> bytes:
    """An HTTP/1.1 403 in the Schema Registry's error form (`error_code` 40301), closing the connection."""
    body = json.dumps({"error_code": 40301, "message": reason}).encode()
    head = (
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class HttpRefusal:
    """One refused connection: answered, half-closed, drained until the client closes (loop thread only)."""

    __slots__ = ("_conn", "_drained", "_on_done", "_timer", "_watch")

    def __init__(
        self, reactor: Reactor, conn: socket.socket, answer: bytes, on_done: Callable[[HttpRefusal], None]
    ) -> None:
        self._conn = conn
        self._drained = 0
        self._on_done = on_done
        self._watch: Watch | None = None
        self._timer: Timer | None = None
        conn.setblocking(False)
        try:
            sent = conn.send(answer)  # a few hundred bytes into an empty send buffer: all of it
        except OSError:
            sent = -1
        if sent != len(answer):
            self.close(reset=True)
            return
        _net.shutdown(conn, socket.SHUT_WR)
        self._watch = reactor.watch(conn, self._drain, on_error=lambda _exc: self.close(reset=True))
        self._watch.set(read=True)
        self._timer = reactor.at(time.monotonic() + _DRAIN_SECONDS, lambda: self.close(reset=True))

    def _drain(self) -> None:
        while True:
            try:
                chunk = self._conn.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                self.close(reset=True)
                return
            if not chunk:  # the client read the answer and closed: a clean close
                self.close(reset=False)
                return
            self._drained += len(chunk)
            if self._drained > _DRAIN_BYTES:
                self.close(reset=True)
                return

    @property
    def closed(self) -> bool:
        return self._conn.fileno() < 0

    def close(self, *, reset: bool) -> None:
        """Idempotent; `reset` for a client that will not finish (deadline, flood, error)."""
        if self.closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        if self._watch is not None:
            self._watch.close()
        if reset:
            _net.reset(self._conn)
        self._conn.close()
        self._on_done(self)
