"""Errors specific to the fault proxy, all under `k2.chaos.errors.ChaosError`.

The HTTP API maps them to Toxiproxy's status codes: `NotFound` -> 404, `AlreadyExists` -> 409,
any other `InvalidFault` or `UnsafeTarget` -> 400.
"""

from __future__ import annotations

from k2.chaos.errors import ChaosError, InvalidFault

__all__ = ["AlreadyExists", "NotFound"]


class NotFound(ChaosError, LookupError):
    """A proxy or toxic name that does not exist; the message lists the names that do."""


class AlreadyExists(InvalidFault):
    """A proxy or toxic with that name is already there; remove it first or pick another name."""
