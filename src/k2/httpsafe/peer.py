"""Who is on the other end of a loopback TCP connection: the uid that owns the client's socket.

The kernel records the creator's uid on every socket. For a connection on loopback the client's socket
is on this host too (local = the client's address, remote = ours), and the kernel answers for that one
socket by its addresses through `sock_diag` netlink (what `ss` uses; no privilege needed), in tens of
microseconds whatever the number of sockets on the host. Where netlink is unavailable (or for IPv6),
/proc/net/tcp{,6} is read instead: a scan of every socket on the host, milliseconds on a busy one.
K2's HTTP APIs and the fault proxy's owner-only proxies use it to let only the stack's owner (and root)
in, with no token for clients to carry, so unchanged Toxiproxy and Schema Registry clients keep working
for the owner.

Only an ESTABLISHED socket counts: once a client closes its socket the kernel shows the leftover state
with uid 0, which must never pass for root.
"""

from __future__ import annotations

import os
import socket
import struct

__all__ = ["allowed_uids", "owner_of", "socket_owner"]

_ESTABLISHED = "01"
_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_TCP_ESTABLISHED = 1
_NO_COOKIE = struct.pack("=II", 0xFFFFFFFF, 0xFFFFFFFF)  # INET_DIAG_NOCOOKIE: look up by addresses
_DIAG_TIMEOUT = 1.0


class _Unavailable(Exception):
    """sock_diag cannot answer here (no netlink, not IPv4): read /proc instead."""


def _sockid(local: tuple[str, int], remote: tuple[str, int]) -> bytes:
    """`struct inet_diag_sockid` for an IPv4 socket: ports and addresses in network order, no interface."""
    try:
        src, dst = socket.inet_aton(local[0]), socket.inet_aton(remote[0])
    except OSError:
        raise _Unavailable from None
    ports = struct.pack("!HH", local[1], remote[1])
    return ports + src + bytes(12) + dst + bytes(12) + struct.pack("=I", 0) + _NO_COOKIE


def _owner_by_diag(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """Ask the kernel for the one IPv4 TCP socket `local` -> `remote`: its uid if ESTABLISHED, else None."""
    if not (0 <= local[1] <= 0xFFFF and 0 <= remote[1] <= 0xFFFF) or ":" in local[0] + remote[0]:
        raise _Unavailable
    sockid = _sockid(local, remote)
    request = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 1 << _TCP_ESTABLISHED) + sockid
    message = struct.pack("=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0) + request
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, _NETLINK_SOCK_DIAG) as nl:
            nl.settimeout(_DIAG_TIMEOUT)
            nl.send(message)
            reply = nl.recv(4096)
    except (OSError, AttributeError):  # no netlink here (another OS, a sandbox): /proc instead
        raise _Unavailable from None
    if len(reply) < 16:
        raise _Unavailable
    kind = struct.unpack_from("=H", reply, 4)[0]
    if kind == _NLMSG_ERROR:
        return None  # no such socket (ENOENT): nobody on this host holds that end
    # struct inet_diag_msg after the 16-byte header: family, state, timer, retrans, the sockid, then
    # expires, rqueue, wqueue, uid, inode.
    if kind != _SOCK_DIAG_BY_FAMILY or len(reply) < 16 + 72 or reply[16 + 4 : 16 + 4 + 36] != sockid[:36]:
        raise _Unavailable
    if reply[17] != _TCP_ESTABLISHED:
        return None
    return int(struct.unpack_from("=I", reply, 16 + 64)[0])


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
    if tables is _TABLES:
        try:
            return _owner_by_diag(local, remote)
        except _Unavailable:
            pass
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
