"""Fixtures shared by every test tier."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def stack_dir() -> Iterator[Path]:
    """A fresh data dir made as `mktemp -d` makes one (0700); K2 gives the postgres user only traverse rights."""
    root = Path(tempfile.mkdtemp(prefix="k2-test-"))
    yield root / "stack"
    shutil.rmtree(root, ignore_errors=True)
