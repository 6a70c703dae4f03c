"""k2.testing: the one place that composes a stack, a chaos session over it and the pytest plugins.

`k2.chaos` knows nothing of `k2.stack` and `k2.stack` nothing of chaos sessions; this layer joins them:

    from k2.stack import LocalStack
    from k2.testing import chaos_session
    from k2.chaos.faults import service_failure

    with LocalStack("/tmp/k2-stack") as stack, chaos_session(stack, seed=42):
        with service_failure("kafka", duration_seconds=5, mode="pause"):
            ...
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from k2.chaos.session import ChaosSession
from k2.testing.targets import declared_services

if TYPE_CHECKING:
    from k2.stack.local import LocalStack

__all__ = ["chaos_session", "declared_services"]


def chaos_session(
    stack: LocalStack,
    *,
    seed: int | None = None,
    recover: bool = False,
    journal: Path | None = None,
    watchdog: bool = True,
) -> ChaosSession:
    """A chaos session over `stack`'s running services, journaled in its data dir (see k2.chaos.session)."""
    return ChaosSession(
        declared_services(stack), journal or stack.journal_path(), seed=seed, recover=recover, watchdog=watchdog
    )
