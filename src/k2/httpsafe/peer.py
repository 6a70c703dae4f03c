"""Who is on the other end of a loopback TCP connection: the uid that owns the client's socket.

The kernel records the creator's uid on every socket and shows it in /proc/net/tcp{,6}; for a connection
on loopback the client's socket is one row there (local = the client's address, remote = ours). K2's HTTP
APIs use it to let only the stack's owner (and root) change anything, with no token for clients to carry,
so unchanged Toxiproxy and Schema Registry clients keep working for the owner.

Only an ESTABLISHED row counts: once a client closes its socket the kernel shows the leftover state with
uid 0, which must never pass for root.
"""

from __future__ import annotations

import os
import socket
import struct

__all__ = ["allowed_uids", "owner_of", "socket_owner"]

_ESTABLISHED = "01"
_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def _decode(field: str) -> tuple[str, int] | None:
    """`0100007F:1F90` (IPv4) or a 32-hex-digit IPv6 address, each 32-bit word in host order."""
    address, _, port = field.partition(":")
    try:
        words = bytes.fromhex(address)
        packed = b"".join(struct.pack("=I", struct.unpack(">I", words[i : i + 4])[0]) for i in range(0, len(words), 4))
        if len(packed) == 4:
            host = socket.inet_ntop(socket.AF_INET, packed)
        elif len(packed) == 16:
            host = socket.inet_ntop(socket.AF_INET6, packed)
            if host.startswith("::ffff:"):  # an IPv4-mapped address: the same peer as its IPv4 form
                host = host.removeprefix("::ffff:")
        else:
            return None
        return host, int(port, 16)
    except (ValueError, struct.error, OSError):
        return None


def owner_of(local: tuple[str, int], remote: tuple[str, int], tables: tuple[str, ...] = _TABLES) -> int | None:
    """The uid owning the established TCP socket `local` -> `remote` on this host, or None if there is none."""
    for table in tables:
        try:
            with open(table, encoding="ascii") as handle:
                next(handle, None)  # the header
                for line in handle:
                    fields = line.split()
                    if len(fields) < 8 or fields[3] != _ESTABLISHED:
                        continue
                    if _decode(fields[1]) == local and _decode(fields[2]) == remote:
                        return int(fields[7])
        except (OSError, ValueError):
            continue
    return None


def socket_owner(conn: socket.socket) -> int | None:
    """The uid owning the client end of `conn`, a connection accepted on loopback; None when unknown."""
    try:
        ours, theirs = conn.getsockname()[:2], conn.getpeername()[:2]
    except OSError:
        return None
    return owner_of((str(theirs[0]).removeprefix("::ffff:"), int(theirs[1])), (str(ours[0]), int(ours[1])))


def allowed_uids() -> frozenset[int]:
    """Who may drive an API served by this process: the user it runs as, and root."""
    return frozenset({0, os.geteuid()})
