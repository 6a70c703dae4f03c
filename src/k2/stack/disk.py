"""A size-limited filesystem for a service's data: a sparse ext4 image, loop-mounted (root only).

The broker's store lives on one so a disk-pressure fault can fill it without touching the machine's disk.
The image persists in the data dir, so data survives `down`/`up` like any other service's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from k2.stack.errors import ConfigError


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise ConfigError(
            f"{what} failed ({' '.join(argv)}: {done.stderr.strip() or done.returncode}). The broker's store "
            "needs a loop device and mkfs.ext4 (e2fsprogs); set K2_STORE_DISK_MB=0 to keep it on the plain disk."
        )


def mount_limited(image: Path, mountpoint: Path, size_mb: int) -> bool:
    """Mount `image` (created on first use) at `mountpoint`; False when not root (no limit then)."""
    if os.geteuid() != 0 or size_mb <= 0:
        return False
    mountpoint.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(mountpoint):
        return True
    if not image.exists():
        mkfs = shutil.which("mkfs.ext4") or "/usr/sbin/mkfs.ext4"
        with open(image, "wb") as handle:
            handle.truncate(size_mb << 20)
        # -m 0: no blocks reserved for root, so "full" is full for the service (it runs as root) too.
        _run([mkfs, "-q", "-F", "-m", "0", str(image)], f"formatting {image}")
    _run(["mount", "-o", "loop", str(image), str(mountpoint)], f"mounting {image} at {mountpoint}")
    return True


def unmount(mountpoint: Path) -> None:
    """Unmount if mounted (lazily if something still holds it), so nothing outlives the stack."""
    if os.path.ismount(mountpoint):
        done = subprocess.run(["umount", str(mountpoint)], capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=60, check=False)
