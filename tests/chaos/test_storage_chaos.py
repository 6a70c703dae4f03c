"""Collected from the package, not copied: `pytest tests/chaos/test_storage_chaos.py -m chaos_storage`."""

from k2.scenarios.suites.test_storage_chaos import *  # noqa: F403
