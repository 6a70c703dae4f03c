"""Errors of k2.stack. Each message names the service and ends with the remedy."""

from __future__ import annotations


class StackError(Exception):
    """Root of every error the stack raises; the CLI prints its message and exits 2."""


class ConfigError(StackError):
    """Bad input: an unknown service, an unusable data dir, a malformed port option."""


class MissingBinary(StackError):
    """A service's executable is not where its wheel should have put it."""


class PortTaken(StackError):
    """A port a service must listen on is already in use."""


class ServiceFailed(StackError):
    """A service exited or never became healthy; carries the tail of its log."""

    def __init__(self, service: str, reason: str, log_tail: str = "", remedy: str = "") -> None:
        self.service = service
        self.reason = reason
        self.log_tail = log_tail
        text = f"{service}: {reason}"
        if log_tail:
            indented = "\n".join("    " + line for line in log_tail.splitlines())
            text += f"\n  last lines of its log:\n{indented}"
        if remedy:
            text += f"\n  {remedy}"
        super().__init__(text)


class StaleState(StackError):
    """The state file names processes that are no longer running."""


class NotRunning(StackError):
    """No stack state in the data dir: nothing was started there."""
