"""Built-in toxics, one per module; importing this package registers them all by type name."""

from __future__ import annotations

from k2.chaos.proxy.toxics.bandwidth import Bandwidth
from k2.chaos.proxy.toxics.blackhole import Blackhole
from k2.chaos.proxy.toxics.latency import Latency
from k2.chaos.proxy.toxics.limit_data import LimitData
from k2.chaos.proxy.toxics.noop import Noop
from k2.chaos.proxy.toxics.reset_peer import ResetPeer
from k2.chaos.proxy.toxics.slicer import Slicer
from k2.chaos.proxy.toxics.slow_close import SlowClose
from k2.chaos.proxy.toxics.timeout import Timeout

__all__ = ["Bandwidth", "Blackhole", "Latency", "LimitData", "Noop", "ResetPeer", "Slicer", "SlowClose", "Timeout"]
