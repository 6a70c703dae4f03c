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

    def __init__(
        self,
        service: str,
        reason: str,
        log_tail: str = "",
        remedy: str = "",
        dependencies: dict[str, str] | None = None,
    ) -> None:
        self.service = service
        self.reason = reason
        self.log_tail = log_tail
        # The tails of the logs of what it depends on: a broker that never gets healthy is often its store's
        # fault, and a stack started in a temp dir is gone (logs too) by the time anyone looks.
        self.dependencies = dependencies or {}
        text = f"{service}: {reason}"
        sections = [("its log", log_tail)]
        sections += [(f"the log of {d}, which it depends on", tail) for d, tail in self.dependencies.items()]
        for label, lines in sections:
            if lines:
                indented = "\n".join("    " + line for line in lines.splitlines())
                text += f"\n  last lines of {label}:\n{indented}"
        if remedy:
            text += f"\n  {remedy}"
        super().__init__(text)


class StaleState(StackError):
    """The state file names processes that are no longer running."""


class NotRunning(StackError):
    """No stack state in the data dir: nothing was started there."""
