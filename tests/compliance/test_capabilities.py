"""One compliance suite for every backend and capability it claims: inject, verify the effect by an
independent probe, restore, verify restored, restore again (idempotent), restore after the runner is
SIGKILLed (the watchdog), and refuse what K2 must not touch.

The cases come from the backends' own claims (`capabilities` of each target class), so a backend that
claims a capability is tested on it, and one without a subject here fails
`test_every_claimed_capability_has_a_subject`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from k2.chaos.errors import UnsafeTarget, Unsupported
from k2.chaos.faults import FaultSpec, Latency, NetworkPartition, ResourceLimit, ServiceFailure
from k2.chaos.faults.disk import DiskFill
from k2.chaos.journal import read_entries
from k2.chaos.session import ChaosSession, ServiceTargets
from k2.chaos.targets import BUILTIN, INVERSES, Capability, builtin_class
from tests import host
from tests.compliance.conftest import NEEDS_CGROUPS, SUBJECTS, VARIANTS, Subject, _cgroups_usable, settled

pytestmark = pytest.mark.integration

MEM = 256 << 20


def _check(subject: Subject, spec: FaultSpec[Any], baseline: dict[str, Any]) -> tuple[Callable[[], bool], ...]:
    """(faulted, normal): what the independent observer must see while the fault holds, and after."""
    o = subject.observe
    if isinstance(spec, ServiceFailure) and spec.mode == "pause":
        return (lambda: o["frozen"]() and not subject.answers()), (lambda: not o["frozen"]() and subject.answers())
    if isinstance(spec, ServiceFailure):
        return (lambda: not o["running"]()), (lambda: o["running"]() and subject.answers())
    if isinstance(spec, ResourceLimit):
        return (lambda: o["limits"]() == (20000, MEM)), (lambda: o["limits"]() == baseline["limits"])
    if isinstance(spec, NetworkPartition):
        return (lambda: not o["reachable"]()), (lambda: o["reachable"]())
    if isinstance(spec, Latency):
        slow = lambda: (o["rtt_ms"]() or 0) >= 250  # noqa: E731
        return slow, (lambda: not slow() and o["reachable"]())
    assert isinstance(spec, DiskFill)
    return (lambda: o["fullness"]() >= 0.89), (lambda: abs(o["fullness"]() - baseline["fullness"]) < 0.01)


SPECS: dict[Capability, list[FaultSpec[Any]]] = {
    Capability.LIFECYCLE: [ServiceFailure(target="svc", mode="stop"), ServiceFailure(target="svc", mode="kill")],
    Capability.FREEZE: [ServiceFailure(target="svc", mode="pause")],
    Capability.LIMITS: [ResourceLimit(target="svc", cpu_quota=20000, mem_limit=MEM)],
    Capability.NETWORK: [NetworkPartition(target="svc", mode="refuse"),
                         NetworkPartition(target="svc", mode="blackhole"),
                         Latency(target="svc", attributes={"latency": 300, "jitter": 0})],
    Capability.DISK: [DiskFill(target="svc", fullness=1.0)],  # Chaos Mesh maps only a full disk (ENOSPC)
}  # fmt: skip


def claims() -> list[tuple[str, Capability]]:
    """(backend, capability) for every installed backend and every capability it claims, and the same for each
    of its variants (another mechanism for the freeze and limits it claims)."""
    found = []
    for backend in BUILTIN:
        cls = builtin_class(backend)
        if cls is not None:
            found += [(name, c) for name in (backend, *VARIANTS.get(backend, ())) for c in sorted(cls.capabilities)
                      if name == backend or c in (Capability.FREEZE, Capability.LIMITS)]  # fmt: skip
    return found


def case(spec: FaultSpec[Any]) -> str:
    """`kind` or `kind:mode`: how cases are named, and how a subject names what its host cannot do."""
    mode = getattr(spec, "mode", None)
    return f"{spec.kind}:{mode}" if mode else spec.kind


def refused_here(subject: Subject, spec: FaultSpec[Any]) -> str | None:
    return subject.unsupported_here.get(case(spec)) or subject.unsupported_here.get(spec.kind)


CASES = [
    pytest.param(backend, spec, id=f"{backend}-{case(spec)}")
    for backend, capability in claims()
    if backend in SUBJECTS
    for spec in SPECS.get(capability, [])
]


def subject_for(make_subject: Callable[[str], Subject], backend: str, spec: FaultSpec[Any]) -> Subject:
    required = os.environ.get(host.REQUIRE_ENV) == "1"  # CI: a missing host feature fails instead of skipping
    if (backend, str(spec.capability)) in NEEDS_CGROUPS and not _cgroups_usable() and not required:
        pytest.skip("needs root and the cgroup v1 freezer, cpu and memory controllers")
    if (backend, spec.capability) == ("process:v2", Capability.FREEZE) and not host.have_v2_freezer() and not required:
        pytest.skip("needs a writable cgroup2 hierarchy with the v2 freezer")
    return make_subject(backend)


def baseline_of(subject: Subject) -> dict[str, Any]:
    return {name: read() for name, read in subject.observe.items() if name in ("limits", "fullness")}


def test_every_claimed_capability_has_a_subject() -> None:
    missing = sorted({backend for backend, capability in claims() if backend not in SUBJECTS and capability in SPECS})
    assert missing == [], f"backends claiming capabilities without a compliance subject: {missing}"


@pytest.mark.parametrize(("backend", "spec"), CASES)
def test_inject_verify_restore_and_restore_again(
    make_subject: Callable[[str], Subject], backend: str, spec: FaultSpec[Any], tmp_path: Path
) -> None:
    subject = subject_for(make_subject, backend, spec)
    assert subject.answers(), "the service does not answer before the fault"
    baseline = baseline_of(subject)
    faulted, normal = _check(subject, spec, baseline)
    declared = ServiceTargets("svc", subject.target, probe=subject.probe)
    with ChaosSession([declared], tmp_path / "journal.jsonl", watchdog=False) as session:
        refusal = refused_here(subject, spec)
        if refusal is not None:
            with pytest.raises(Unsupported, match=refusal):
                session.inject(spec)
            assert session.require_journal().pending() == [] and normal()
            return
        with session.inject(spec) as handle:
            assert handle.effect is not None and handle.effect.backend == backend.split(":")[0]
            assert settled(faulted), f"{spec!r}: not seen from outside ({handle.effect.summary()})"
        assert handle.restore_effect is not None and handle.restore_effect.changed
        assert settled(normal), f"{spec!r}: not restored as seen from outside ({handle.restore_effect.summary()})"
        again = getattr(subject.target, INVERSES[spec.primitive])()
        assert again.changed is False, f"a second {again.primitive} found something to undo: {again.summary()}"
        assert normal()
        assert session.require_journal().pending() == []


RUNNER = """
import json, sys, time
from k2.chaos.faults import FaultSpec
from k2.chaos.session import ChaosSession, ServiceTargets
from k2.chaos.targets import target_from_description

target = target_from_description(json.loads(sys.argv[1]))
spec = FaultSpec.from_description(json.loads(sys.argv[2]))
with ChaosSession([ServiceTargets(spec.target, target)], sys.argv[3]) as session:
    session.inject(spec)
    print("injected", flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize(("backend", "spec"), CASES)
def test_restored_by_the_watchdog_after_the_runner_is_sigkilled(
    make_subject: Callable[[str], Subject], backend: str, spec: FaultSpec[Any], tmp_path: Path
) -> None:
    subject = subject_for(make_subject, backend, spec)
    journal = tmp_path / "journal.jsonl"
    args = [json.dumps(subject.target.describe()), json.dumps(spec.describe()), str(journal)]
    refusal = refused_here(subject, spec)
    if refusal is not None:  # a runner refused before anything changed leaves the watchdog nothing to undo
        done = subprocess.run([sys.executable, "-c", RUNNER, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and "Unsupported" in done.stderr and refusal in done.stderr, done.stderr[-2000:]
        assert "injected" not in done.stdout
        assert all(not e.pending for e in read_entries(journal).values()) and subject.answers()
        return
    baseline = baseline_of(subject)
    faulted, normal = _check(subject, spec, baseline)
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, *args], stdout=subprocess.PIPE, text=True)
    try:
        assert runner.stdout is not None
        ready = select.select([runner.stdout], [], [], 60)[0]
        assert ready and runner.stdout.readline().strip() == "injected", "the runner did not inject in 60 s"
        assert settled(faulted), f"{spec!r}: not seen from outside"
        os.kill(runner.pid, signal.SIGKILL)
        killed = time.monotonic()
        runner.wait(10)
        assert settled(normal, 60), f"{spec!r}: not restored 60 s after the runner's SIGKILL"
        assert settled(lambda: all(not e.pending for e in read_entries(journal).values()), 10)
        print(f"{backend} {spec.kind}: restored {time.monotonic() - killed:.2f}s after the SIGKILL")
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


@pytest.mark.parametrize("backend", [b for b in SUBJECTS if b in BUILTIN and builtin_class(b) is not None])
def test_a_target_k2_did_not_start_is_refused(make_subject: Callable[[str], Subject], backend: str) -> None:
    subject = make_subject(backend)
    assert subject.foreign is not None, f"{backend}: the compliance subject names no foreign target"
    with pytest.raises(UnsafeTarget):
        foreign = subject.foreign()
        # Refused when built, or at the latest before the first primitive touches anything.
        for capability in sorted(getattr(foreign, "capabilities", ())):
            spec = SPECS[capability][0]
            spec.apply(foreign, None)
