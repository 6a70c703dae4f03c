"""What the stack tests share: running the real CLI, and proving nothing is left running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from k2.stack import procs


def run_k2(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k2", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        check=False,
    )


def processes_under(data_dir: Path) -> list[tuple[int, str]]:
    """Every live process whose working directory or command line points into data_dir."""
    found = []
    marker = str(data_dir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if procs.starttime_of(int(entry.name)) is None:
            continue
        if cwd.startswith(marker) or marker in cmdline:
            found.append((int(entry.name), cmdline.strip()))
    return found
