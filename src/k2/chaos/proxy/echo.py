"""A loopback echo / sink server: the service to put behind a proxy in self-tests and benchmarks."""

from __future__ import annotations

import contextlib
import logging
import socket

from k2.chaos.proxy import _net
from k2.chaos.proxy.listener import backlog
from k2.chaos.proxy.reactor import Reactor, Watch, shared

log = logging.getLogger(__name__)

_READ_SIZE = 1 << 20


class _Conn:
    """One client: echo what it sends (keeping what its socket does not take yet), or count it."""

    def __init__(self, server: EchoServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.total = 0
        self.head = b""  # "count" mode: the 8-byte length the client announces first
        self.out = b""
        self.eof = False
        self.watch: Watch = server.reactor.watch(sock, self.readable, self.writable, on_error=lambda _: self.close())
        self.watch.set(read=True)

    def readable(self) -> None:
        data: bytes | memoryview
        try:
            if self.server.mode == "echo":
                data = self.sock.recv(_READ_SIZE)
            else:
                scratch = self.server.reactor.scratch  # sink and count modes: this loop's read buffer
                data = scratch[: self.sock.recv_into(scratch)]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:
            self.eof = True
            self.watch.set(read=False)
            if self.server.mode == "sink":
                self.out = str(self.total).encode()
            self.writable()
            return
        self.total += len(data)
        if isinstance(data, bytes):  # echo mode reads a bytes of its own
            self.out = data
            self.writable()
        elif self.server.mode == "count":
            self.head += bytes(data[: 8 - len(self.head)])
            if len(self.head) == 8 and self.total - 8 >= int.from_bytes(self.head, "big"):
                self.eof = True
                self.watch.set(read=False)
                self.out = str(self.total - 8).encode()
                self.writable()

    def writable(self) -> None:
        try:
            sent = self.sock.send(self.out) if self.out else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close()
            return
        self.out = self.out[sent:]
        if self.out:
            self.watch.set(read=False, write=True)
        elif self.eof:
            self.close()
        else:
            self.watch.set(read=True, write=False)

    def close(self) -> None:
        self.watch.close()
        with contextlib.suppress(OSError):
            self.sock.close()
        self.server._conns.discard(self)


class EchoServer:
    """`mode="echo"` sends back what it gets; `mode="sink"` reads until EOF, then replies the byte
    count as ASCII digits and closes; `mode="count"` does the same once it got the number of bytes the
    client announced in its first 8 (big-endian), for proxies that do not forward a half-close (Toxiproxy).
    Runs on the process's event loop; `stop()` closes everything."""

    def __init__(self, mode: str = "echo", reactor: Reactor | None = None) -> None:
        if mode not in ("echo", "sink", "count"):
            raise ValueError(f"EchoServer mode {mode!r} is unknown; use 'echo', 'sink' or 'count'")
        self.mode = mode
        self.reactor = reactor or shared()
        self._sock = _net.listen_socket((_net.LOOPBACK, 0), backlog())
        self._sock.setblocking(False)
        self.address: _net.Address = self._sock.getsockname()[:2]
        self._conns: set[_Conn] = set()
        self._watch = self.reactor.watch(self._sock, self._accept)

    def start(self) -> EchoServer:
        self.reactor.call(lambda: self._watch.set(read=True))
        return self

    def stop(self) -> None:
        def stop() -> None:
            self._watch.close()
            _net.stop_listening(self._sock)
            self._sock.close()
            for conn in list(self._conns):
                _net.shutdown(conn.sock)
                conn.close()

        self.reactor.call(stop)

    def __enter__(self) -> EchoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connections(self) -> int:
        return len(self._conns)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("echo server: accept failed: %s", exc)
                return
            conn.setblocking(False)
            _net.tune(conn)
            self._conns.add(_Conn(self, conn))
