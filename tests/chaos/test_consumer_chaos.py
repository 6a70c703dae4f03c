"""Collected from the package, not copied: `pytest tests/chaos/test_consumer_chaos.py -m chaos_consumer`."""

from k2.scenarios.suites.test_consumer_chaos import *  # noqa: F403
