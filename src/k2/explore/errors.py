"""The k2.explore error hierarchy: one root, one subclass per phase.

Every message names the thing it is about (a schedule field, a rule, a file) and ends with the remedy.
"""

from __future__ import annotations

__all__ = ["AbortRuleError", "ExploreError", "ScheduleError", "ShrinkError"]


class ExploreError(Exception):
    """Root of every error k2.explore raises."""


class ScheduleError(ExploreError, ValueError):
    """A schedule (drawn, or read from a report for --replay or shrink) is invalid; nothing was started."""


class AbortRuleError(ExploreError, ValueError):
    """An --abort-on rule cannot be parsed or names an unknown probe."""


class ShrinkError(ExploreError):
    """A report cannot be shrunk (its outcome is not a failure, or its schedule does not reproduce it)."""
