"""Helpers for the proxy tests: connect, exact reads with deadlines, RTT, and waiting on conditions."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

from k2.chaos.proxy import _net

Address = tuple[str, int]


def connect(address: Address, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, size: int, timeout: float = 5.0) -> bytes:
    """Read exactly `size` bytes or fail at the deadline (EOF early is an error too)."""
    deadline = time.monotonic() + timeout
    out = bytearray()
    while len(out) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"got {len(out)} of {size} bytes before the deadline")
        sock.settimeout(remaining)
        chunk = sock.recv(size - len(out))
        if not chunk:
            raise ConnectionError(f"EOF after {len(out)} of {size} bytes")
        out += chunk
    return bytes(out)


def recv_until_eof(sock: socket.socket, timeout: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout
    out = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no EOF before the deadline ({len(out)} bytes read)")
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            return bytes(out)
        out += chunk


def rtt_ms(sock: socket.socket, payload: bytes = b"ping", timeout: float = 5.0) -> float:
    """One request/response through an echo server, in milliseconds."""
    start = time.perf_counter()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload), timeout) == payload
    return (time.perf_counter() - start) * 1000


def nothing_arrives(sock: socket.socket, within: float) -> bool:
    """True if no byte (and no EOF) arrives within `within` seconds: the expected silence of a stall."""
    sock.settimeout(within)
    try:
        sock.recv(1)
    except TimeoutError:
        return True
    return False


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)  # polling interval of a deadline-bounded wait, not a synchronisation sleep


def pattern(size: int) -> bytes:
    """A byte sequence where any loss, duplication or reordering shows."""
    return os.urandom(size)


class Recorder:
    """A loopback server that greets each client with `greeting` and records what it receives."""

    def __init__(self, greeting: bytes = b"") -> None:
        self.greeting = greeting
        self.received = bytearray()
        self._lock = threading.Lock()
        self._sock = _net.listen_socket((_net.LOOPBACK, 0), 16)
        self.address: Address = self._sock.getsockname()[:2]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.greeting:
                conn.sendall(self.greeting)
            while chunk := conn.recv(65536):
                with self._lock:
                    self.received += chunk
        except OSError:
            pass

    def send_all_clients(self, data: bytes) -> None:
        for conn in self._conns:
            conn.sendall(data)

    def got(self) -> bytes:
        with self._lock:
            return bytes(self.received)

    def close(self) -> None:
        _net.stop_listening(self._sock)
        self._sock.close()
        for conn in self._conns:
            _net.shutdown(conn)
            conn.close()
