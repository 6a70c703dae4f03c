"""A listening socket with an accept thread, that can refuse connections without losing its port."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable

from k2.chaos.proxy import _net

log = logging.getLogger(__name__)

_BACKLOG = 128


class Listener:
    """Accepts connections for one client label and hands them to `on_accept`.

    `pause()` makes the port refuse new connections (RST, like a closed port) while it stays bound to
    this process; pauses nest, so a disabled proxy with an active partition resumes only when both end.
    """

    def __init__(
        self,
        label: str,
        address: _net.Address,
        on_accept: Callable[[socket.socket, tuple[str, int], Listener], None],
        owner: str,
    ) -> None:
        self.label = label
        self._on_accept = on_accept
        self._owner = owner
        self._sock = _net.listen_socket(address, _BACKLOG)
        self.address: _net.Address = self._sock.getsockname()[:2]
        self._cond = threading.Condition()
        self._pauses = 0
        self._generation = 0  # bumped by every pause, so a pause that already ended is not an error
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name=f"k2-proxy-{owner}-accept-{label}", daemon=True)

    @property
    def listening(self) -> bool:
        return self._pauses == 0 and not self._closed

    def start(self) -> None:
        self._thread.start()

    def pause(self) -> None:
        with self._cond:
            self._pauses += 1
            self._generation += 1
            if self._pauses == 1 and not self._closed:
                _net.stop_listening(self._sock)
                log.debug("%s/%s: refusing connections on %s:%d", self._owner, self.label, *self.address)

    def resume(self) -> None:
        with self._cond:
            if self._pauses == 0:
                return
            self._pauses -= 1
            if self._pauses == 0 and not self._closed:
                self._sock.listen(_BACKLOG)
                log.debug("%s/%s: accepting connections on %s:%d", self._owner, self.label, *self.address)
                self._cond.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            _net.stop_listening(self._sock)
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self._sock.close()

    def _accept_loop(self) -> None:
        while True:
            generation = self._generation
            try:
                conn, peer = self._sock.accept()
            except OSError as exc:
                with self._cond:
                    if self._closed:
                        return
                    if self._pauses or generation != self._generation:
                        while self._pauses and not self._closed:
                            self._cond.wait(1.0)
                    else:  # not a pause (e.g. out of fds): back off briefly instead of spinning
                        log.warning("%s/%s: accept failed: %s", self._owner, self.label, exc)
                        self._cond.wait(0.05)
                continue
            try:
                self._on_accept(conn, peer, self)
            except Exception:
                log.exception("%s/%s: failed to start a proxied connection", self._owner, self.label)
                _net.reset(conn)
                conn.close()
