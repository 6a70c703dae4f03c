"""The one pytest plugin K2 installs (`pytest11` entry point `k2`): the chaos framework's plugin and the
platform's fixtures, composed here and nowhere else.

Why one place: two entry points are registered in an order pytest does not promise, and pluggy calls the
later-registered plugin first, so a plugin that changed another's state at configure time depended on that
order; which errors count as the platform failing gracefully was lost that way (#10). Here the pieces are
listed once, and what joins them is answered through a hook, asked when a scenario is judged, when every
plugin is registered. `-p no:k2` turns all of K2 off.
"""

from __future__ import annotations

import pytest

from k2.platform.errors import PlatformError

pytest_plugins = ["k2.chaos.pytest_plugin", "k2.chaos.pytest_verdict", "k2.scenarios.fixtures"]


def pytest_chaos_graceful_errors(config: pytest.Config) -> tuple[type[BaseException], ...]:
    """A typed platform error with a message is the seed's "fails expectedly": FAILED_GRACEFULLY."""
    return (PlatformError,)
