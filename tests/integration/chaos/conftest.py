"""One real embedded stack per chaos integration module, plus producer helpers."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.kafka_clients import AckCounter, new_topic, read_all

from k2.stack import LocalStack
from k2.testing import chaos_session

__all__ = ["AckCounter", "new_topic", "read_all"]


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    root = Path(tempfile.mkdtemp(prefix="k2-chaos-test-"))
    try:
        with LocalStack(root / "stack") as running:
            yield running
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def session(stack: LocalStack) -> Iterator[object]:
    stack.up()  # a previous test may have left a service down on purpose
    with chaos_session(stack, seed=7) as opened:
        yield opened
    assert opened.active == []
