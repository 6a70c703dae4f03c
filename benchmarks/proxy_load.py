"""The load tool of `bench_proxy`: the same client code drives direct, K2 and Toxiproxy alike.

Everything runs in the benchmark's own process (the proxies and the echo/sink service are other
processes), single-threaded on `epoll` for the many-connection phases, so the client costs the same
whatever it talks to.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

Address = tuple[str, int]


def _connect(address: Address, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        chunk = sock.recv(size - len(out))
        if not chunk:
            raise ConnectionError(f"EOF after {len(out)} of {size} bytes")
        out += chunk
    return bytes(out)


def bulk_mbps(address: Address, total: int) -> float:
    """Send `total` bytes in 1 MiB writes to the counting sink (no half-close: Toxiproxy breaks those);
    it answers with the count once it has them all."""
    block = memoryview(bytearray(1 << 20))
    with socket.create_connection(address, timeout=120) as sock:
        start = time.perf_counter()
        sock.sendall(total.to_bytes(8, "big"))
        sent = 0
        while sent < total:
            sock.sendall(block)
            sent += len(block)
        reply = b""
        while chunk := sock.recv(64):
            reply += chunk
        elapsed = time.perf_counter() - start
    if int(reply or b"-1") != sent:
        raise RuntimeError(f"sink got {reply!r} bytes, sent {sent}")
    return sent / elapsed / 1e6


def transfer_seconds(address: Address, total: int) -> float:
    """Seconds from the first byte sent to the sink's count of all `total` bytes (bandwidth exactness)."""
    data = memoryview(bytearray(total))
    with socket.create_connection(address, timeout=120) as sock:
        start = time.perf_counter()
        sock.sendall(total.to_bytes(8, "big"))
        sock.sendall(data)
        reply = recv_until_eof(sock)
        elapsed = time.perf_counter() - start
    if int(reply or b"-1") != total:
        raise RuntimeError(f"sink got {reply!r} bytes, sent {total}")
    return elapsed


def recv_until_eof(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(64):
        out += chunk
    return out


def interleaved_rtts_us(
    addresses: list[Address], count: int, *, block: int, size: int = 64, warmup: int = 50
) -> list[list[float]]:
    """Round trips of a `size`-byte message through the echo server behind each address, in microseconds:
    one connection each, `block` round trips on one, then the next, the order reversed every round, until
    each has `count`. A burst of load on the machine then
    falls on every target alike instead of on whichever happened to run during it."""
    message = b"x" * size
    out: list[list[float]] = [[] for _ in addresses]
    socks = [_connect(address) for address in addresses]
    try:
        for sock in socks:
            for _ in range(warmup):
                sock.sendall(message)
                recv_exactly(sock, size)
        order = list(range(len(socks)))
        for _ in range(-(-count // block)):
            for i in order:
                sock, samples = socks[i], out[i]
                for _ in range(min(block, count - len(samples))):
                    start = time.perf_counter()
                    sock.sendall(message)
                    recv_exactly(sock, size)
                    samples.append((time.perf_counter() - start) * 1e6)
            order.reverse()
    finally:
        for sock in socks:
            sock.close()
    return out


class _Client:
    __slots__ = ("done", "sent_at", "sock", "want")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.done = 0
        self.want = 0
        self.sent_at = 0.0


def concurrent_round_trips(address: Address, connections: int, trips: int, size: int = 64) -> dict[str, object]:
    """`connections` open connections each doing `trips` round trips at once, driven by one epoll loop.

    Returns the wall time of the round trips (connections already open) and every round trip's latency.
    """
    message = b"x" * size
    clients = [_Client(_connect(address)) for _ in range(connections)]
    for c in clients:  # one round trip each first: every connection is through to the echo server
        c.sock.sendall(message)
        recv_exactly(c.sock, size)
        c.sock.setblocking(False)
    epoll = select.epoll()
    by_fd = {c.sock.fileno(): c for c in clients}
    latencies: list[float] = []
    try:
        start = time.perf_counter()
        for c in clients:
            epoll.register(c.sock.fileno(), select.EPOLLIN)
            c.sent_at = time.perf_counter()
            c.sock.send(message)
            c.want = size
        active = len(clients)
        while active:
            for fd, _ in epoll.poll(10.0):
                c = by_fd[fd]
                data = c.sock.recv(65536)
                if not data:
                    raise ConnectionError("echo connection closed mid-run")
                c.want -= len(data)
                if c.want > 0:
                    continue
                now = time.perf_counter()
                latencies.append((now - c.sent_at) * 1e6)
                c.done += 1
                if c.done == trips:
                    epoll.unregister(fd)
                    active -= 1
                    continue
                c.sent_at = now
                c.sock.send(message)
                c.want = size
        elapsed = time.perf_counter() - start
    finally:
        epoll.close()
        for c in clients:
            c.sock.close()
    return {"seconds": elapsed, "latencies_us": latencies}


def accept_burst(address: Address, connections: int, size: int = 64) -> dict[str, object]:
    """Open `connections` connections at once (non-blocking connects) and do one round trip on each;
    time until the last answered, and the kernel's dropped-SYN counters over the burst."""
    before = listen_drops()
    message = b"x" * size
    socks: list[socket.socket] = []
    epoll = select.epoll()
    start = time.perf_counter()
    try:
        for _ in range(connections):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = sock.connect_ex(address)
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, os.strerror(err))
            socks.append(sock)
            epoll.register(sock.fileno(), select.EPOLLOUT)
        by_fd = {s.fileno(): s for s in socks}
        pending = {s.fileno(): size for s in socks}
        connected = 0
        deadline = time.monotonic() + 60
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} of {connections} connections unanswered after 60 s")
            for fd, mask in epoll.poll(1.0):
                sock = by_fd[fd]
                if mask & select.EPOLLOUT:
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                    sock.send(message)
                    connected += 1
                    epoll.modify(fd, select.EPOLLIN)
                    continue
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("connection closed during the burst")
                pending[fd] -= len(data)
                if pending[fd] <= 0:
                    del pending[fd]
                    epoll.unregister(fd)
        elapsed = time.perf_counter() - start
    finally:
        epoll.close()
        for sock in socks:
            sock.close()
    after = listen_drops()
    return {"seconds": elapsed, **{k: after[k] - before[k] for k in before}}


def listen_drops() -> dict[str, int]:
    """TcpExt ListenDrops and ListenOverflows from /proc/net/netstat (host-wide: SYNs the kernel dropped)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], map(int, values.split()[1:]), strict=True))
            return {"listen_drops": table.get("ListenDrops", 0), "listen_overflows": table.get("ListenOverflows", 0)}
    return {"listen_drops": 0, "listen_overflows": 0}


@contextlib.contextmanager
def open_connections(address: Address, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections through to the echo server (one round trip each), held open in the block."""
    socks = []
    try:
        for _ in range(count):
            sock = _connect(address)
            sock.sendall(b"x")
            recv_exactly(sock, 1)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def timer_overshoot_us(samples: int = 200) -> list[float]:
    """How late this host wakes a thread that waits with a deadline (select with a timeout, as K2's
    loop does): each sample waits 1-20 ms and records the lateness in microseconds."""
    out = []
    for i in range(samples):
        want = 0.001 + (i % 20) / 1000
        start = time.perf_counter()
        select.select([], [], [], want)
        out.append((time.perf_counter() - start - want) * 1e6)
    return out
