"""Collected from the package, not copied: `pytest tests/chaos/test_schema_chaos.py -m chaos_schema`."""

from k2.scenarios.suites.test_schema_chaos import *  # noqa: F403
