"""Collected from the package, not copied: `pytest tests/chaos/test_broker_chaos.py -m chaos_kafka`."""

from k2.scenarios.suites.test_broker_chaos import *  # noqa: F403
