"""The k2.chaos error hierarchy: one root, one subclass per phase.

Every message names the service or fault it is about and ends with the remedy.
"""

from __future__ import annotations

__all__ = ["ChaosError", "InjectionFailed", "InvalidFault", "RestoreFailed", "UnsafeTarget", "Unsupported"]


class ChaosError(Exception):
    """Root of every error k2.chaos raises, so callers can catch the framework's errors as one."""


class InvalidFault(ChaosError, ValueError):
    """A fault's parameters are wrong; raised when it is built, before anything is touched."""


class InjectionFailed(ChaosError):
    """A fault was applied but its effect could not be verified (or it could not be applied)."""


class RestoreFailed(ChaosError):
    """A fault could not be undone; the journal keeps it pending for `k2 chaos recover`."""


class Unsupported(ChaosError):
    """The backend cannot perform this primitive here; the message says what would make it work.

    `capability` names what was asked for, `service` where, and `route` the way that would work (e.g. the
    fault proxy for network faults on a backend that cannot shape traffic), when there is one.
    """

    def __init__(
        self, message: str, *, capability: str | None = None, service: str | None = None, route: str | None = None
    ) -> None:
        super().__init__(message)
        self.capability, self.service, self.route = capability, service, route


class UnsafeTarget(ChaosError):
    """The target is not one K2 may touch (not part of the declared stack, or its pid was reused)."""
