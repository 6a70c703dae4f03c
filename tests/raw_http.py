"""A raw HTTP/1.1 client for tests that must send what no HTTP library sends (chunked bodies by hand,
half requests, slow clients) and read exactly what comes back, each read with a deadline."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

Address = tuple[str, int]


def read_response(sock: socket.socket, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """One response: (status, lower-cased headers, body); TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout
    data = b""

    def more() -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete response before the deadline")
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed mid-response after {data[:200]!r}")
        return chunk

    while b"\r\n\r\n" not in data:
        data += more()
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        data = more()
        rest += data
    return status, headers, rest[:length]


def request(
    address: Address, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One request on a fresh connection: (status, parsed JSON body or None)."""
    raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(raw)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(head.encode() + b"\r\n" + raw)
        status, _, payload = read_response(sock)
    return status, json.loads(payload) if payload else None


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True when the server closes the connection (EOF or reset) before `timeout`."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True
