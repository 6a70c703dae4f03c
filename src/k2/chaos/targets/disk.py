"""A service's data filesystem as a chaos target: fill it (one preallocated file), free it again.

Refuses the machine's root filesystem: filling a disk is only safe on a filesystem of the service's own
(the embedded stack gives the broker's store a size-limited one).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from k2.chaos.effects import Filled, Freed, measure
from k2.chaos.errors import InjectionFailed, InvalidFault
from k2.chaos.targets.capabilities import Capability
from k2.chaos.targets.docker_extras import FILL_PREFIX, df, fill_file


class DiskTarget:
    kind = "disk"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.DISK})
    limitations: ClassVar[dict[str, str]] = {
        "disk_fill": "a filesystem of the service's own only (the machine's root filesystem is refused)"
    }

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

    def fill_disk(self, size: str | int | None = None, fullness: float | None = 1.0) -> Filled:
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
        return measure(Filled, "fill_disk", self.name, self.kind, t0, wall, path=self.path, file=str(file),
                       bytes_written=written, fullness=round(after["used"] / max(1, after["total"]), 4),
                       avail_bytes=after["avail"], detail={"df_before": before, "df_after": after})  # fmt: skip

    def free_disk(self) -> Freed:
        """Remove every fill file K2 wrote there. Idempotent."""
        t0, wall = time.monotonic(), time.time()
        removed = []
        for file in Path(self.path).glob(f"{FILL_PREFIX}*"):
            file.unlink(missing_ok=True)
            removed.append(str(file))
        self.files = []
        after = df(Path(self.path))
        return measure(Freed, "free_disk", self.name, self.kind, t0, wall, removed=tuple(removed),
                       fullness=round(after["used"] / max(1, after["total"]), 4), changed=bool(removed),
                       detail={"df_after": after})  # fmt: skip
