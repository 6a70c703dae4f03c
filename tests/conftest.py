"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def stack_dir() -> Iterator[Path]:
    """A fresh data dir on a path the postgres service user can traverse (pytest's tmp_path is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="k2-test-"))
    os.chmod(root, 0o755)
    yield root / "stack"
    shutil.rmtree(root, ignore_errors=True)
