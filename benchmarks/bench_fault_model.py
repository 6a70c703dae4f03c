"""The fault model's own cost: one `with service_failure(svc, None, "pause"):` through a journaled session
(spec, capability lookup, three fsynced journal lines, typed effects, the record) on a target whose
primitives do nothing, so only K2's bookkeeping is measured. The journal is on /dev/shm when it exists,
so the disk's fsync does not hide it.

    .venv/bin/python -m benchmarks.bench_fault_model
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from benchmarks.common import summary, write
from k2.chaos.effects import Frozen, Thawed
from k2.chaos.faults import service_failure
from k2.chaos.session import ChaosSession, ServiceTargets
from k2.chaos.targets import Capability

TRIALS = 2000


class Noop:
    """A Freeze target that changes nothing (a stand-in, named as one)."""

    kind, name = "noop", "svc"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.FREEZE})

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name}

    def pause(self, timeout: float = 10.0, probe: Any = None) -> Frozen:
        return Frozen(primitive="pause", target="svc", backend="noop", started_at=time.time(), duration_s=0.0,
                      frozen=True)  # fmt: skip

    def resume(self, timeout: float = 10.0, probe: Any = None) -> Thawed:
        return Thawed(primitive="resume", target="svc", backend="noop", started_at=time.time(), duration_s=0.0)


def main() -> None:
    where = "/dev/shm" if Path("/dev/shm").is_dir() else None
    journal = Path(tempfile.mkdtemp(prefix="k2-bench-model-", dir=where)) / "journal.jsonl"
    times = []
    with ChaosSession([ServiceTargets("svc", Noop())], journal, watchdog=False):
        for _ in range(TRIALS):
            started = time.perf_counter()
            with service_failure("svc", None, "pause"):
                pass
            times.append(time.perf_counter() - started)
    stats = {k: (round(v * 1e6, 1) if k != "n" else v) for k, v in summary(times).items()}
    path = write("fault_model", {"trials": TRIALS, "journal_on": where or "the temp dir", "inject_restore_us": stats})
    print(f"inject + restore through the model, no-op target: {stats} µs -> {path}")


if __name__ == "__main__":
    main()
