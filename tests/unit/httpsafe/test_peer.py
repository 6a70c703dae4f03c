"""Who owns the other end of a loopback connection: the kernel's answer through sock_diag, and /proc's."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator

import pytest

from k2.httpsafe.peer import owner_of, socket_owner


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client = socket.create_connection(server.getsockname(), timeout=5)
        accepted, _ = server.accept()
        with client, accepted:
            yield client, accepted


def test_the_client_socket_is_ours(pair: tuple[socket.socket, socket.socket]) -> None:
    client, accepted = pair
    assert socket_owner(accepted) == os.geteuid()
    local, remote = client.getsockname(), client.getpeername()
    assert owner_of(local, remote) == owner_of(local, remote, tables=("/proc/net/tcp",)) == os.geteuid()


def test_no_such_socket_has_no_owner(pair: tuple[socket.socket, socket.socket]) -> None:
    _, accepted = pair
    assert owner_of(("127.0.0.1", 1), accepted.getsockname()) is None


def test_a_closed_client_never_passes_for_root(pair: tuple[socket.socket, socket.socket]) -> None:
    """A closed socket's leftover state (FIN_WAIT, TIME_WAIT) shows uid 0: it must read as unknown."""
    client, accepted = pair
    client.close()
    assert accepted.recv(1) == b""  # the FIN arrived: the client end is no longer ESTABLISHED
    assert socket_owner(accepted) is None


def test_a_reset_client_has_no_owner(pair: tuple[socket.socket, socket.socket]) -> None:
    client, accepted = pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    with pytest.raises(ConnectionResetError):
        accepted.recv(1)
    assert socket_owner(accepted) is None
