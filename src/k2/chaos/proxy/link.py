"""A proxied connection: the client socket, the upstream socket, and one `Pipe` per direction.

Everything here runs in the connection's own event loop (one of the process's, see Proxy): a non-blocking
connect to the upstream (with a deadline), the optional classification of the client by its first bytes,
then the two pipes.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import time
from typing import TYPE_CHECKING

from k2.chaos.proxy import _net
from k2.chaos.proxy.pipe import Pipe
from k2.chaos.proxy.reactor import Reactor, Timer, Watch
from k2.chaos.proxy.toxic import Stream

if TYPE_CHECKING:
    from k2.chaos.proxy.proxy import Proxy

log = logging.getLogger(__name__)

CLASSIFY_TIMEOUT = 2.0  # seconds a classifier may wait for a client's first bytes


class _NeedMore(Exception):
    """The classifier asked for bytes the client has not sent yet: try again when more arrive."""


class Link:
    """Owns both sockets; ends when both directions forwarded their EOF, or on `close()`/`reset()`.

    Ends three ways: both sides sent EOF (normal), `close()` (FIN to both peers, after data already
    sent) or `reset()` (RST to both peers, unsent data discarded).
    """

    def __init__(
        self, proxy: Proxy, client: socket.socket, peer: tuple[str, int], label: str, seq: int, reactor: Reactor
    ) -> None:
        self.proxy = proxy
        self.reactor = reactor  # the loop this connection lives on (see Proxy: threads)
        self.client = client
        self.peer = peer
        self.label = label
        self.seq = seq
        self.upstream: socket.socket | None = None
        self.up = Pipe(self, Stream.UPSTREAM)
        self.down = Pipe(self, Stream.DOWNSTREAM)
        self.closing = False
        self._eofs = 0
        self._ended = False
        self._client_watch: Watch | None = None
        self._upstream_watch: Watch | None = None
        self._timer: Timer | None = None
        self._classify_until = 0.0

    def pipe(self, stream: Stream) -> Pipe:
        return self.up if stream is Stream.UPSTREAM else self.down

    @property
    def buffered(self) -> int:
        return self.up.buffered + self.down.buffered

    def __repr__(self) -> str:
        return f"<Link {self.proxy.name}#{self.seq} {self.label} from {self.peer[0]}:{self.peer[1]}>"

    # --- starting -------------------------------------------------------------------------------

    def start(self) -> None:
        self.client.setblocking(False)
        _net.tune(self.client)
        self._client_watch = self.reactor.watch(
            self.client, self.up.readable, self.down.writable, on_error=self._internal_error
        )
        if self.proxy.classifier is not None:
            self._classify_until = time.monotonic() + CLASSIFY_TIMEOUT
            self._client_watch.on_read = self._classify
            self._client_watch.set(read=True, edge=True)  # a peek leaves the bytes: wake only on new ones
            self._timer = self.reactor.at(self._classify_until, self._classify)
            return
        self._connect()

    def _classify(self) -> None:
        if self.closing or self._client_watch is None or self._client_watch.on_read != self._classify:
            return
        classifier = self.proxy.classifier
        try:
            label = classifier.classify(self._peek) if classifier is not None else None
        except _NeedMore:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._client_watch.on_read = self.up.readable
        self._client_watch.set(read=False, edge=False)
        if label is not None and not self.proxy._relabel(self, label):
            self.reset(reason=f"client {label!r} is partitioned")
            return
        self._connect()

    def _peek(self, size: int) -> bytes:
        """The client's first `size` bytes, left in the socket; fewer once it went quiet for too long."""
        try:
            data = self.client.recv(size, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError:
            return b""
        if data is not None and (len(data) >= size or not data):
            return data
        if time.monotonic() < self._classify_until:
            raise _NeedMore
        return data or b""

    def _connect(self) -> None:
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setblocking(False)
        self.upstream = upstream
        err = upstream.connect_ex(self.proxy.upstream)
        if err not in (0, errno.EINPROGRESS):
            self._unreachable(OSError(err, errno.errorcode.get(err, str(err))))
            return
        self._upstream_watch = self.reactor.watch(upstream, None, self._connected, on_error=self._internal_error)
        self._upstream_watch.set(write=True)
        self._timer = self.reactor.at(time.monotonic() + self.proxy.connect_timeout, self._connect_timed_out)

    def _connected(self) -> None:
        assert self.upstream is not None and self._upstream_watch is not None and self._client_watch is not None
        err = self.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._unreachable(OSError(err, errno.errorcode.get(err, str(err))))
            return
        if self._timer is not None:
            self._timer.cancel()
        _net.tune(self.upstream)
        self._upstream_watch.set(write=False)
        self._upstream_watch.on_read, self._upstream_watch.on_write = self.down.readable, self.up.writable
        self.up.start(self.client, self.upstream, self._client_watch, self._upstream_watch)
        self.down.start(self.upstream, self.client, self._upstream_watch, self._client_watch)

    def _connect_timed_out(self) -> None:
        self._unreachable(TimeoutError(f"no answer within {self.proxy.connect_timeout} s"))

    def _unreachable(self, exc: OSError) -> None:
        log.warning("%r: upstream %s:%d unreachable (%s); resetting client", self, *self.proxy.upstream, exc)
        self.reset(reason="upstream unreachable")

    def _internal_error(self, exc: BaseException) -> None:
        self.reset(reason=f"internal error: {exc!r}")

    # --- ending ---------------------------------------------------------------------------------

    def eof_forwarded(self, pipe: Pipe) -> None:
        self._eofs += 1
        if self._eofs == 2:
            self._finish()

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
            self._finish()

    def reset(self, reason: str = "") -> None:
        """Abort with a TCP RST on both sides."""
        if self._begin_end():
            log.debug("%r: resetting (%s)", self, reason)
            for sock in self._sockets():
                _net.reset(sock)
            self._finish()

    def _begin_end(self) -> bool:
        if self.closing:
            return False
        self.closing = True
        self.up.stop()
        self.down.stop()
        return True

    def _sockets(self) -> list[socket.socket]:
        return [s for s in (self.client, self.upstream) if s is not None]

    def _finish(self) -> None:
        if self._ended:
            return
        self._ended = True
        self.closing = True
        self.up.stop()
        self.down.stop()
        if self._timer is not None:
            self._timer.cancel()
        for watch in (self._client_watch, self._upstream_watch):
            if watch is not None:
                watch.close()
        for sock in self._sockets():
            with contextlib.suppress(OSError):
                sock.close()
        self.proxy._link_ended(self)
