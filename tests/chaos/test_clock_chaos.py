"""Collected from the package, not copied: `pytest tests/chaos/test_clock_chaos.py -m chaos_clock`."""

from k2.scenarios.suites.test_clock_chaos import *  # noqa: F403
