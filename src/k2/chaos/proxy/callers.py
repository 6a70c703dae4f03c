"""Who may connect through an owner-only proxy: the uid owning the client's socket, as the kernel says.

The same rule as K2's HTTP APIs (k2.httpsafe): the user this process runs as, and root. Checked once per
connection at accept, by one `sock_diag` question to the kernel (tens of microseconds).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from k2.httpsafe.peer import allowed_uids, socket_owner

__all__ = ["owner_check"]


def owner_check() -> Callable[[socket.socket], str | None]:
    """A check for accepted connections: None to admit, else why the caller is refused."""
    allowed = allowed_uids()

    def check(conn: socket.socket) -> str | None:
        uid = socket_owner(conn)
        if uid is None:
            return "the user owning the client's socket is unknown (it closed, or is not loopback TCP)"
        if uid not in allowed:
            owners = " and ".join(f"uid {u}" for u in sorted(allowed, reverse=True))
            return f"uid {uid} may not connect to an owner-only proxy (only {owners} may)"
        return None

    return check
