"""Shared defences of K2's loopback HTTP APIs: who is calling, and requests that cannot pin or crash a server.

A neutral package: both `k2.chaos` (the fault proxy) and `k2.platform` (the schema registry) use it, and it
imports neither.
"""

from __future__ import annotations

from k2.httpsafe.handler import BodyError, GuardedHandler
from k2.httpsafe.jsonbody import JsonError, parse_json
from k2.httpsafe.peer import allowed_uids, owner_of, socket_owner

__all__ = ["BodyError", "GuardedHandler", "JsonError", "allowed_uids", "owner_of", "parse_json", "socket_owner"]
