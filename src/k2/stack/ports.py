"""Free loopback ports, picked at start so two stacks (or a stack and a test) never collide."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Callable
from pathlib import Path

from k2.chaos.errors import ChaosError
from k2.chaos.shards import PORT_SHARE_ENV, parse_shard
from k2.stack.errors import PortTaken

HOST = "127.0.0.1"
# Below the kernel's ephemeral range, so no client socket takes a port between pick and bind;
# SeaweedFS also listens on port + 10000, which must stay below that range too.
_LOW = 12000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_HIGH = max(_LOW + 1000, _ephemeral_low() - 10000)
_taken_by_us: set[int] = set()


def _in_share() -> Callable[[int], bool]:
    """Shard I of N (`k2 chaos run --parallel N`) picks only ports whose residue mod 4 is its share; port + 10000
    keeps the residue, so SeaweedFS's second port stays in the share too."""
    text = os.environ.get(PORT_SHARE_ENV)
    if not text:
        return lambda port: True
    try:
        mine, count = parse_shard(text)
    except ChaosError as exc:
        raise PortTaken(f"{PORT_SHARE_ENV}={text!r}: {exc}; unset it to pick from every port") from None
    return lambda port: port % 4 % count == mine - 1


def is_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on host:port and we may bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick(count: int = 1, *, grpc_offset: bool = False, rng: random.Random | None = None) -> list[int]:
    """Pick `count` distinct free ports; with grpc_offset, port + 10000 must be free too."""
    rng = rng or random.SystemRandom()
    in_share = _in_share()
    chosen: list[int] = []
    for _ in range(2000):
        if len(chosen) == count:
            break
        port = rng.randrange(_LOW, _HIGH)
        if not in_share(port):
            continue
        needed = [port, port + 10000] if grpc_offset else [port]
        if any(p in _taken_by_us or p in chosen for p in needed):
            continue
        if all(is_free(p) for p in needed):
            chosen.append(port)
            _taken_by_us.update(needed)
    if len(chosen) < count:
        raise PortTaken(f"could not find {count} free loopback ports in {_LOW}-{_HIGH}; free some and retry")
    return chosen


def require_free(service: str, port: int) -> None:
    """Fail with a clear message when a port a service must reuse is held by someone else."""
    if not is_free(port):
        raise PortTaken(
            f"{service}: port {HOST}:{port} is already in use by another process. "
            f"Stop whatever holds it (`ss -ltnp 'sport = :{port}'` shows it), or run "
            f"`k2 stack down` and `k2 stack up` to pick new ports."
        )
