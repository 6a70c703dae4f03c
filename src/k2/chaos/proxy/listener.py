"""A listening socket on the event loop, that can refuse connections without losing its port."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable
from functools import cache

from k2.chaos.proxy import _net
from k2.chaos.proxy.reactor import Reactor

log = logging.getLogger(__name__)

_ACCEPTS_PER_WAKE = 256  # then other sockets get a turn; the listener stays readable and comes back
_RETRY_AFTER_ERROR = 0.05  # e.g. out of file descriptors: back off instead of spinning


@cache
def backlog() -> int:
    """The kernel's maximum accept queue (`net.core.somaxconn`): a burst of connects is queued, not
    dropped. Linux caps whatever `listen()` asks at this value, so asking it is asking the most."""
    try:
        with open("/proc/sys/net/core/somaxconn") as limit:
            return max(128, int(limit.read()))
    except (OSError, ValueError):
        return socket.SOMAXCONN


class Listener:
    """Accepts connections for one client label and hands them to `on_accept` (loop thread only).

    Each wake-up accepts until the queue is empty (up to a fair share), so a burst is drained at once.
    `pause()` makes the port refuse new connections (RST, like a closed port) while it stays bound to
    this process; pauses nest, so a disabled proxy with an active partition resumes only when both end.
    """

    def __init__(
        self,
        reactor: Reactor,
        label: str,
        address: _net.Address,
        on_accept: Callable[[socket.socket, tuple[str, int], Listener], None],
        owner: str,
    ) -> None:
        self.label = label
        self._reactor = reactor
        self._on_accept = on_accept
        self._owner = owner
        self._sock = _net.listen_socket(address, backlog())
        self._sock.setblocking(False)
        self.address: _net.Address = self._sock.getsockname()[:2]
        self._watch = reactor.watch(self._sock, self._accept)
        self._pauses = 0
        self._closed = False

    @property
    def listening(self) -> bool:
        return self._pauses == 0 and not self._closed

    def start(self) -> None:
        if self.listening:
            self._watch.set(read=True)

    def pause(self) -> None:
        self._pauses += 1
        if self._pauses == 1 and not self._closed:
            self._watch.set(read=False)
            _net.stop_listening(self._sock)
            log.debug("%s/%s: refusing connections on %s:%d", self._owner, self.label, *self.address)

    def resume(self) -> None:
        if self._pauses == 0:
            return
        self._pauses -= 1
        if self._pauses == 0 and not self._closed:
            self._sock.listen(backlog())
            self._watch.set(read=True)
            log.debug("%s/%s: accepting connections on %s:%d", self._owner, self.label, *self.address)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._watch.close()
        _net.stop_listening(self._sock)
        with contextlib.suppress(OSError):
            self._sock.close()

    def _accept(self) -> None:
        for _ in range(_ACCEPTS_PER_WAKE):
            if not self.listening:
                return
            try:
                conn, peer = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # not a pause (those stop watching first): e.g. out of fds
                log.warning("%s/%s: accept failed: %s", self._owner, self.label, exc)
                self._watch.set(read=False)
                self._reactor.at(time.monotonic() + _RETRY_AFTER_ERROR, self.start)
                return
            try:
                self._on_accept(conn, peer, self)
            except Exception:
                log.exception("%s/%s: failed to start a proxied connection", self._owner, self.label)
                _net.reset(conn)
                conn.close()
