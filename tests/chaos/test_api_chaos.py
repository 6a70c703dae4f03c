"""Collected from the package, not copied: `pytest tests/chaos/test_api_chaos.py -m chaos_api`."""

from k2.scenarios.suites.test_api_chaos import *  # noqa: F403
