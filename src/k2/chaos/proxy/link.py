"""A proxied connection: the client socket, the upstream socket, and one `Pipe` per direction."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from k2.chaos.proxy import _net
from k2.chaos.proxy.pipe import Pipe
from k2.chaos.proxy.toxic import Stream

if TYPE_CHECKING:
    from k2.chaos.proxy.proxy import Proxy

log = logging.getLogger(__name__)

CLASSIFY_TIMEOUT = 2.0  # seconds a classifier may wait for a client's first bytes


class Link:
    """Owns both sockets; the last of its threads to finish closes them and tells the proxy.

    Ends three ways: both sides sent EOF (normal), `close()` (FIN to both peers, after data already
    sent) or `reset()` (RST to both peers, unsent data discarded).
    """

    def __init__(self, proxy: Proxy, client: socket.socket, peer: tuple[str, int], label: str, seq: int) -> None:
        self.proxy = proxy
        self.client = client
        self.peer = peer
        self.label = label
        self.seq = seq
        self.upstream: socket.socket | None = None
        buffer_size = proxy.buffer_size
        self.up = Pipe(self, Stream.UPSTREAM, buffer_size)
        self.down = Pipe(self, Stream.DOWNSTREAM, buffer_size)
        self._lock = threading.Lock()
        self._threads = 0
        self._eofs = 0
        self._ended = False
        self.closing = False
        self.done = threading.Event()

    def pipe(self, stream: Stream) -> Pipe:
        return self.up if stream is Stream.UPSTREAM else self.down

    def __repr__(self) -> str:
        return f"<Link {self.proxy.name}#{self.seq} {self.label} from {self.peer[0]}:{self.peer[1]}>"

    # --- threads --------------------------------------------------------------------------------

    def start(self) -> None:
        self.spawn(self._connect_and_run, "down")

    def spawn(self, target: Callable[[], None], role: str) -> threading.Thread:
        """Start a thread that counts toward the link's lifetime."""
        with self._lock:
            self._threads += 1
        thread = threading.Thread(
            target=self._guard, args=(target,), name=f"k2-proxy-{self.proxy.name}-{self.seq}-{role}", daemon=True
        )
        thread.start()
        return thread

    def _guard(self, target: Callable[[], None]) -> None:
        try:
            target()
        except Exception:  # a bug must not leave sockets open; log it and tear the link down
            log.exception("%r: thread failed", self)
            self.reset(reason="internal error")
        finally:
            with self._lock:
                self._threads -= 1
                last = self._threads == 0
            if last:
                self._finish()

    def _connect_and_run(self) -> None:
        _net.tune(self.client)
        classifier = self.proxy.classifier
        if classifier is not None:
            label = classifier.classify(self._peek)
            if label is not None and not self.proxy._relabel(self, label):
                self.reset(reason=f"client {label!r} is partitioned")
                return
        try:
            upstream = socket.create_connection(self.proxy.upstream, timeout=self.proxy.connect_timeout)
        except OSError as exc:
            log.warning("%r: upstream %s:%d unreachable (%s); resetting client", self, *self.proxy.upstream, exc)
            self.reset(reason="upstream unreachable")
            return
        upstream.settimeout(None)
        _net.tune(upstream)
        with self._lock:
            self.upstream = upstream
            closing = self.closing
        if closing:  # cut while we were connecting
            _net.reset(upstream)
            return
        self.up.src, self.up.dst = self.client, upstream
        self.down.src, self.down.dst = upstream, self.client
        self.spawn(self.up.read_loop, "up")
        self.down.read_loop()

    def _peek(self, size: int) -> bytes:
        """The client's first `size` bytes, left in the socket; fewer if it goes quiet for too long."""
        timeout = struct.pack("ll", int(CLASSIFY_TIMEOUT), int(CLASSIFY_TIMEOUT % 1 * 1e6))
        try:
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)
            return self.client.recv(size, socket.MSG_PEEK | socket.MSG_WAITALL)
        except OSError:
            return b""
        finally:
            with contextlib.suppress(OSError):
                self.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 0))

    # --- ending ---------------------------------------------------------------------------------

    def eof_forwarded(self, pipe: Pipe) -> None:
        with self._lock:
            self._eofs += 1
            both = self._eofs == 2
        if both:
            self._stop_pipes()

    def fail(self, pipe: Pipe, exc: OSError) -> None:
        """An I/O error on a live link (peer reset, broken pipe): pass the abort on as a RST."""
        if not self.closing:
            log.debug("%r: %s failed (%s); resetting", self, pipe.stream.value, exc)
            self.reset(reason=f"{pipe.stream.value} error: {exc}")

    def close(self, reason: str = "") -> None:
        """Cut with a FIN on both sides; bytes already written are still delivered."""
        if self._begin_end():
            log.debug("%r: closing (%s)", self, reason)
            for sock in self._sockets():
                _net.shutdown(sock)

    def reset(self, reason: str = "") -> None:
        """Abort with a TCP RST on both sides."""
        if self._begin_end():
            log.debug("%r: resetting (%s)", self, reason)
            for sock in self._sockets():
                _net.reset(sock)

    def _begin_end(self) -> bool:
        with self._lock:
            if self.closing:
                return False
            self.closing = True
        self._stop_pipes()
        return True

    def _stop_pipes(self) -> None:
        self.up.stop()
        self.down.stop()

    def _sockets(self) -> list[socket.socket]:
        with self._lock:
            return [s for s in (self.client, self.upstream) if s is not None]

    def _finish(self) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
        for sock in self._sockets():
            with contextlib.suppress(OSError):
                sock.close()
        self.done.set()
        self.proxy._link_ended(self)
