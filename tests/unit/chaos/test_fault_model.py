"""The fault model without services: frozen specs, a session that finds the capability a fault needs (or
says which route would work), handles that restore exactly what they injected, and re-entry."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from k2.chaos.effects import Frozen, Thawed
from k2.chaos.errors import ChaosError, InvalidFault, UnsafeTarget, Unsupported
from k2.chaos.faults import FaultSpec, ServiceFailure, disk_fill, inject_latency, service_failure
from k2.chaos.journal import read_entries
from k2.chaos.session import ChaosSession, ServiceTargets
from k2.chaos.targets import Capability, register_target


class FakeFreezer:
    """A Freeze target whose state is a file, so a target rebuilt from its description sees it."""

    kind = "fake-freezer"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.FREEZE})

    def __init__(self, name: str, state: Path) -> None:
        self.name, self.state = name, state

    @classmethod
    def from_description(cls, desc: Mapping[str, Any]) -> FakeFreezer:
        return cls(desc["name"], Path(desc["state"]))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "state": str(self.state)}

    def pause(self, timeout: float = 10.0, probe: Any = None) -> Frozen:
        if self.state.exists():
            raise ChaosError(f"{self.name}: already paused")
        self.state.touch()
        return Frozen(primitive="pause", target=self.name, backend=self.kind, started_at=time.time(), duration_s=0.0,
                      frozen=True)  # fmt: skip

    def resume(self, timeout: float = 10.0, probe: Any = None) -> Thawed:
        was = self.state.exists()
        self.state.unlink(missing_ok=True)
        return Thawed(primitive="resume", target=self.name, backend=self.kind, started_at=time.time(), duration_s=0.0,
                      changed=was)  # fmt: skip


register_target(FakeFreezer.kind, FakeFreezer.from_description)


class Pretender:
    """Claims the freeze capability without implementing it."""

    kind, name = "pretender", "svc"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.FREEZE})

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name}


@pytest.fixture
def freezer(tmp_path: Path) -> FakeFreezer:
    return FakeFreezer("svc", tmp_path / "svc.paused")


@pytest.fixture
def session(tmp_path: Path, freezer: FakeFreezer) -> Any:
    with ChaosSession([ServiceTargets("svc", freezer)], tmp_path / "journal.jsonl", watchdog=False) as opened:
        yield opened


def test_a_spec_is_frozen_hashable_and_round_trips_through_its_description() -> None:
    spec = ServiceFailure(target="kafka", duration_s=5, mode="pause")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.mode = "stop"  # type: ignore[misc]
    latency = inject_latency("kafka", latency_ms=200, jitter_ms=50).spec
    assert {spec, latency} and FaultSpec.from_description(latency.describe()) == latency
    assert latency.parameters()["attributes"] == {"latency": 200, "jitter": 50}
    assert spec.capability is Capability.FREEZE and ServiceFailure(target="kafka").capability is Capability.LIFECYCLE


@pytest.mark.parametrize(
    ("desc", "message"),
    [
        ({"kind": "earthquake", "target": "kafka"}, "unknown fault kind"),
        ({"kind": "service_failure", "target": "kafka", "magnitude": 9}, "unknown parameter"),
        ({"kind": "service_failure", "target": "../etc"}, "not a service name"),
        ({"kind": "disk_fill", "target": "kafka", "fullness": 1.5}, "fraction"),
    ],
)
def test_specs_from_plain_data_are_validated(desc: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidFault, match=message):
        FaultSpec.from_description(desc)


def test_a_target_claiming_a_capability_it_lacks_is_refused_when_declared() -> None:
    with pytest.raises(InvalidFault, match="claims the freeze capability"):
        ServiceTargets("svc", Pretender())  # type: ignore[arg-type]


def test_a_missing_capability_is_unsupported_with_the_route_and_nothing_is_journaled(session: Any) -> None:
    with pytest.raises(Unsupported) as refused, disk_fill("svc"):
        pass
    assert refused.value.capability == "disk" and refused.value.service == "svc"
    assert refused.value.route is not None and "DiskTarget" in refused.value.route
    with pytest.raises(Unsupported, match="fault-proxy"), inject_latency("svc"):
        pass
    assert read_entries(session.journal_path) == {}


def test_undeclared_services_and_foreign_handles_are_refused(session: Any, tmp_path: Path) -> None:
    with pytest.raises(UnsafeTarget, match="not a service of the declared stack"), service_failure("zookeeper"):
        pass
    foreign = FakeFreezer("svc", tmp_path / "other.paused")
    foreign.kind = "other-freezer"  # same name, another backend: not what the session declared
    with (
        pytest.raises(UnsafeTarget, match="not a target the session declared"),
        service_failure(foreign, None, "pause"),
    ):
        pass
    assert not (tmp_path / "other.paused").exists()


def test_inject_returns_the_handle_with_typed_effects_and_the_journal_entry(session: Any, freezer: FakeFreezer) -> None:
    handle = session.inject(ServiceFailure(target="svc", duration_s=None, mode="pause"))
    with handle:
        assert freezer.state.exists() and isinstance(handle.effect, Frozen) and handle.effect.frozen
        assert read_entries(session.journal_path)[handle.journal_id].status == "active"
    assert not freezer.state.exists() and isinstance(handle.restore_effect, Thawed)
    assert read_entries(session.journal_path)[handle.journal_id].status == "restored"
    assert handle.restore() is None  # once


def test_the_same_fault_entered_twice_injects_and_restores_twice(session: Any, freezer: FakeFreezer) -> None:
    """Issue #10 §4: the second `with fault:` used to inject but never restore (the target stayed paused)."""
    fault = service_failure("svc", duration_seconds=None, mode="pause")
    handles = []
    for _ in range(2):
        with fault as held:
            assert freezer.state.exists()
            handles.append(held)
        assert not freezer.state.exists()
    assert handles[0] is not handles[1] and all(h.restore_effect is not None for h in handles)
    assert [e.status for e in read_entries(session.journal_path).values()] == ["restored", "restored"]


def test_entering_a_fault_while_it_holds_is_refused_and_the_first_keeps_holding(
    session: Any, freezer: FakeFreezer
) -> None:
    fault = service_failure("svc", duration_seconds=None, mode="pause")
    with fault:
        with pytest.raises(ChaosError, match="already under"), fault:
            pass
        assert freezer.state.exists()  # a failed inner inject used to undo the outer fault
    assert not freezer.state.exists()
    assert session.active == [] and session.require_journal().pending() == []


def test_a_timed_fault_is_restored_by_its_timer_even_without_with(session: Any, freezer: FakeFreezer) -> None:
    handle = service_failure("svc", duration_seconds=0.2, mode="pause").inject()
    assert freezer.state.exists()
    assert handle.wait(5.0) and not freezer.state.exists()


def test_a_failed_inject_is_recorded_and_leaves_nothing_pending(session: Any, freezer: FakeFreezer) -> None:
    freezer.state.touch()  # paused by someone else: the fake refuses to pause again
    with pytest.raises(ChaosError, match="already paused"), service_failure("svc", None, "pause"):
        pass
    assert session.records[-1].error is not None and session.require_journal().pending() == []
