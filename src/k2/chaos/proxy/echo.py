"""A loopback echo / sink server: the service to put behind a proxy in self-tests and benchmarks."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

from k2.chaos.proxy import _net

log = logging.getLogger(__name__)


class EchoServer:
    """`mode="echo"` sends back what it gets; `mode="sink"` reads until EOF, then replies the byte
    count as ASCII digits and closes. One thread per connection; `stop()` closes everything."""

    def __init__(self, mode: str = "echo", buffer_size: int = 1 << 20) -> None:
        if mode not in ("echo", "sink"):
            raise ValueError(f"EchoServer mode {mode!r} is unknown; use 'echo' or 'sink'")
        self.mode = mode
        self._buffer_size = buffer_size
        self._sock = _net.listen_socket((_net.LOOPBACK, 0), 128)
        self.address: _net.Address = self._sock.getsockname()[:2]
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name=f"k2-echo-{mode}", daemon=True)

    def start(self) -> EchoServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closed = True
        _net.stop_listening(self._sock)
        self._thread.join(5)
        self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            _net.shutdown(conn)

    def __enter__(self) -> EchoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            _net.tune(conn)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="k2-echo-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = bytearray(self._buffer_size)
        view = memoryview(buf)
        total = 0
        try:
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                total += n
                if self.mode == "echo":
                    conn.sendall(view[:n])
            if self.mode == "sink":
                conn.sendall(str(total).encode())
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()
