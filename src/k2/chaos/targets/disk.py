"""A service's data filesystem as a chaos target: fill it (one preallocated file), free it again.

Refuses the machine's root filesystem: filling a disk is only safe on a filesystem of the service's own
(the embedded stack gives the broker's store a size-limited one).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from k2.chaos.errors import InjectionFailed, InvalidFault
from k2.chaos.targets.base import Effect
from k2.chaos.targets.docker_extras import FILL_PREFIX, df, fill_file


class DiskTarget:
    kind = "disk"

    def __init__(self, name: str, path: str, *, applied: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.path = path
        self.files: list[str] = list((applied or {}).get("files", []))

    @classmethod
    def from_description(cls, desc: Mapping[str, Any]) -> DiskTarget:
        if desc.get("kind") != cls.kind:
            raise InvalidFault(f"not a disk target description: kind={desc.get('kind')!r}")
        return cls(desc["name"], desc["path"], applied=desc.get("applied"))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "path": self.path, "applied": {"files": list(self.files)}}

    def fill_disk(self, size: str | int | None = None, fullness: float | None = 1.0) -> Effect:
        """Preallocate one file until `size` bytes or `fullness` of the filesystem is used; verified with df."""
        t0, wall = time.monotonic(), time.time()
        if size is not None:
            fullness = None
        file, written, before = fill_file(Path(self.path), size, fullness, shared_ok=False, name=self.name)
        self.files.append(str(file))
        after = df(Path(self.path))
        if after["used"] - before["used"] < min(written, before["avail"]) * 0.9:
            self.free_disk()
            raise InjectionFailed(f"{self.name}: wrote {written} bytes to {file} but df shows {after} (was {before})")
        measured = {"path": self.path, "file": str(file), "bytes": written, "df_before": before, "df_after": after,
                    "fullness": round(after["used"] / max(1, after["total"]), 4)}  # fmt: skip
        return Effect("fill_disk", self.name, wall, time.monotonic() - t0, measured)

    def free_disk(self) -> Effect:
        """Remove every fill file K2 wrote there. Idempotent."""
        t0, wall = time.monotonic(), time.time()
        removed = []
        for file in Path(self.path).glob(f"{FILL_PREFIX}*"):
            file.unlink(missing_ok=True)
            removed.append(str(file))
        self.files = []
        measured = {"removed": removed, "df_after": df(Path(self.path))}
        return Effect("free_disk", self.name, wall, time.monotonic() - t0, measured, bool(removed))
