"""Socket helpers: loopback-only addresses, port-keeping listeners, and a real TCP reset.

Everything here is Linux-first (the only platform K2 runs on) with portable fallbacks.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import mmap
import re
import socket
import struct
import sys
from typing import Any

from k2.chaos.errors import InvalidFault, UnsafeTarget

log = logging.getLogger(__name__)

Address = tuple[str, int]
LOOPBACK = "127.0.0.1"
_LOOPBACK_NAMES = {"127.0.0.1", "localhost"}
_WILDCARDS = {"0.0.0.0", "::", ""}
_PORT = re.compile(r"[0-9]{1,5}")
_LINGER_ZERO = struct.pack("ii", 1, 0)


def is_wildcard(value: str) -> bool:
    """`0.0.0.0:P`, `[::]:P`, `:::P` or `:P`: "every interface" in Toxiproxy's listen addresses."""
    host = value.rpartition(":")[0]
    return host.strip("[]") in _WILDCARDS


def parse_address(value: str | tuple[str, int] | list[object], what: str, *, wildcard: bool = False) -> Address:
    """Accept `"host:port"` (Toxiproxy's form) or `(host, port)`; only loopback is allowed.

    K2 never binds or connects outside 127.0.0.1, so anything else is refused here, before a socket exists.
    With `wildcard`, a listen address on every interface (0.0.0.0, [::]) means loopback instead.
    Ports are ASCII digits only: `str.isdigit()` also accepts "²", which `int()` refuses.
    """
    if isinstance(value, str):
        host, sep, port_text = value.rpartition(":")
        if not sep or not _PORT.fullmatch(port_text):
            raise InvalidFault(f"{what} address {value[:80]!r} is not 'host:port'; write it as '127.0.0.1:8080'")
        port = int(port_text)
    elif isinstance(value, tuple | list) and len(value) == 2:
        host, port = str(value[0]), value[1]  # type: ignore[assignment]
        if not isinstance(port, int) or isinstance(port, bool):
            raise InvalidFault(f"{what} port {port!r} is not an integer; pass (host, port) with an int port")
    else:
        raise InvalidFault(
            f"{what} address {str(value)[:80]!r} is neither 'host:port' nor (host, port); pass one of those"
        )
    host = host.strip("[]") or LOOPBACK
    if wildcard and host in _WILDCARDS:
        host = LOOPBACK
    if host not in _LOOPBACK_NAMES:
        raise UnsafeTarget(
            f"{what} address {host[:80]}:{port} is not loopback; the proxy only binds and connects to 127.0.0.1"
        )
    if not 0 <= port <= 65535:
        raise InvalidFault(f"{what} port {port} is out of range; use 0..65535 (0 = pick a free port)")
    return (LOOPBACK, port)


def scratch_buffer(size: int) -> memoryview:
    """A writable buffer of `size` bytes that costs memory only where it has been written.

    Anonymous mapped memory: its pages are the kernel's shared zero page until first touched, so an
    idle proxy does not carry a 1 MiB read buffer it has not used, and a proxy that only ever moved
    small messages carries one page of it.
    """
    return memoryview(mmap.mmap(-1, size))


def format_address(address: Address) -> str:
    """Toxiproxy's `host:port` form."""
    return f"{address[0]}:{address[1]}"


def listen_socket(address: Address, backlog: int) -> socket.socket:
    """Bind a listening socket whose port survives `pause()`/`resume()`.

    Linux forgets an auto-assigned port when a listener is shut down, so for port 0 we first learn a free
    port with a placeholder socket, then bind the real one to that explicit port while the placeholder
    still holds it (both have SO_REUSEADDR, neither listens): the explicit bind pins the port.
    """
    placeholder = None
    host, port = address
    if port == 0:
        placeholder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        placeholder.bind((host, 0))
        port = placeholder.getsockname()[1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    finally:
        if placeholder is not None:
            placeholder.close()
    return sock


def stop_listening(sock: socket.socket) -> None:
    """Make the port refuse connections (RST to SYN, pending ones reset) but keep it bound.

    On Linux `shutdown()` on a listener returns it to the closed state and wakes a blocked `accept()`;
    `listen()` on the same socket later resumes on the same port, so nobody can steal it meanwhile.
    """
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def tune(sock: socket.socket) -> None:
    """No Nagle: the proxy forwards chunks as it gets them, and must not add 40 ms delayed-ACK stalls."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@functools.cache
def _load_connect() -> Any:
    """libc's connect(), loaded on the first reset (ctypes costs the proxy daemon ~4 MiB of memory)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.connect, (ctypes.c_ubyte * 16)()  # and a sockaddr whose family is AF_UNSPEC (0)
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        return None


def reset(sock: socket.socket) -> None:
    """Send a TCP RST now and wake every thread blocked on the socket; the fd stays open.

    `connect(AF_UNSPEC)` makes Linux disconnect the socket (RST for an established one) and wakes blocked
    readers *and* writers, which `close()` with SO_LINGER 0 alone does not do while another thread is
    inside `recv()`. Elsewhere we fall back to linger-0, which resets when the fd is finally closed.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    fd = sock.fileno()
    if fd < 0:
        return
    loaded = _load_connect()
    if loaded is not None and loaded[0](fd, loaded[1], 16) == 0:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)


def shutdown(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    """`shutdown()` that ignores sockets already gone; used to cut links with a FIN."""
    with contextlib.suppress(OSError):
        sock.shutdown(how)
