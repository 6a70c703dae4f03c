"""Consumer-rebalancing chaos: the Iceberg writer as a group of processes (k2.scenarios.writer_group), broken
while its consumer group rebalances. Each scenario runs under load, says what should happen, and ends with the
checker on Kafka AND Iceberg (every acknowledged trade in Iceberg exactly once) and with the group's lag
recovered: its committed offsets reach the end of every partition (measured, in the report).

Members are chaos targets by name (`writer-1`, ...), so kills, pauses and leaves are journaled faults like any
other: restored on exit, after a runner crash by the watchdog.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from k2.chaos.faults import service_failure

pytestmark = [pytest.mark.chaos, pytest.mark.chaos_consumer]

LAG_TIMEOUT = 60.0


def produce(producer: Any, factory: Any, n: int) -> None:
    for _ in range(n):
        producer.produce_trade(factory())
    producer.poll(0)


def under_load(producer: Any, factory: Any, seconds: float, per_second: int = 300) -> None:
    """Keep producing at about `per_second` for `seconds` (the body of a fault: load while it lasts)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        produce(producer, factory, per_second // 10)
        producer.poll(0.1)


def assignments(member: Any) -> int:
    """How many assignments the member has received so far in this life (one log line each)."""
    with open(member.log, "rb") as log:
        log.seek(member.log_offset)
        return log.read().count(b"iceberg-writer: assigned")


def settled(group: Any) -> bool:
    """Every running member has been assigned since it (re)started: no join is in flight."""
    return all(assignments(m) for m in group.alive())


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)
    return found


def lag_recovers(group: Any, reader: Any, notes: dict[str, Any]) -> None:
    """Every partition's end (read independently of the writers) committed by the group; what was measured goes
    into `notes` (a fault's, so the report shows it)."""
    ends: dict[int, int] = {}
    for record in reader.read():
        partition, offset = record.position
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    waited = group.wait_caught_up(reader.topic, ends, LAG_TIMEOUT)
    committed = group.committed(reader.topic, sorted(ends))
    notes["lag"] = {"ends": ends, "committed": committed, "recovered_after_s": waited}
    assert waited is not None, f"lag did not recover within {LAG_TIMEOUT:g}s: committed {committed}, ends {ends}"


def record_action(session: Any, kind: str, target: str, started: float, notes: dict[str, Any]) -> dict[str, Any]:
    """A change that has no undo (partitions cannot be removed) on the scenario's timeline, beside its faults."""
    from k2.chaos.faults.injection import FaultRecord

    record = FaultRecord(kind, target, {}, None, injected_at=started, restored_at=time.time(), notes=notes)
    session.records.append(record)
    return record.notes


class CommittedOffsets:
    """Samples the group's committed offsets in the background; `backwards` lists every decrease seen
    (a zombie's stale commit would be one)."""

    def __init__(self, group: Any, topic: str, partitions: list[int], every: float = 0.3) -> None:
        self.backwards: list[tuple[int, int, int]] = []  # (partition, was, became)
        self.samples = 0
        self._last: dict[int, int] = {}
        self._stop = threading.Event()
        self._args = (group, topic, partitions, every)
        self._thread = threading.Thread(target=self._run, daemon=True, name="committed-offsets")

    def __enter__(self) -> CommittedOffsets:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        group, topic, partitions, every = self._args
        while not self._stop.wait(every):
            try:
                now = group.committed(topic, partitions, timeout=2.0)
            except Exception:  # the broker is busy or a member is rebalancing: sample again later
                continue
            self.samples += 1
            for partition, offset in now.items():
                if offset < 0:  # nothing committed yet (OFFSET_INVALID)
                    continue
                was = self._last.get(partition, -1)
                if offset < was:
                    self.backwards.append((partition, was, offset))
                self._last[partition] = max(was, offset)


class TestConsumerRebalancing:
    def test_writer_killed_in_the_middle_of_a_rebalance(
        self, producer_v2: Any, trade_factory: Any, writer_group: Any, chaos_session: Any, trades_reader: Any,
        verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """Three writers join one group at once and, while the group is still rebalancing (a member not yet
        assigned), writer-1 is SIGKILLed, then restarted (another rebalance). Every acknowledged trade reaches
        Iceberg exactly once and the group's lag recovers."""
        group = writer_group(3)
        produce(producer_v2, trade_factory, 300)
        with service_failure("writer-1", duration_seconds=1, mode="kill", session=chaos_session) as fault:
            fault.record.notes["unassigned_members"] = [m.name for m in group.members() if not assignments(m)]
            under_load(producer_v2, trade_factory, 1.0)
        assert fault.record.notes["unassigned_members"], "every member was assigned before the kill: no rebalance hit"
        assert producer_v2.flush(30) == 0
        verify_no_loss(iceberg=True)
        lag_recovers(group, trades_reader, fault.record.notes)

    def test_writers_join_and_leave_under_load(
        self, producer_v2: Any, trade_factory: Any, writer_group: Any, chaos_session: Any, chaos_draws: Any,
        trades_reader: Any, verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """Partition reassignment stress: under steady load, three times a seeded choice of writer leaves for
        1.5 s (a graceful stop or a SIGKILL) and rejoins, and a third writer joins half-way. Exactly once into Iceberg,
        lag recovered. Each leave waits until the last join has completed (every running member assigned):
        Tansu 0.6's coordinator can stop assigning for good when a member leaves in the last moments of a join
        (README: what the suites found in Tansu), and this scenario is about reassigning a formed group's
        partitions."""
        group = writer_group(2)
        for step in range(3):
            if step == 1:
                group.start(1, wait=False)
            wait_for(lambda: settled(group), 30.0, "every running writer's assignment (the last join completed)")
            member = chaos_draws.choice(f"leaving_{step}", [m.name for m in group.alive()])
            mode = chaos_draws.choice(f"how_{step}", ("stop", "kill"))
            with service_failure(member, duration_seconds=1.5, mode=mode, session=chaos_session) as fault:
                under_load(producer_v2, trade_factory, 1.5)
        assert producer_v2.flush(30) == 0
        verify_no_loss(iceberg=True)
        lag_recovers(group, trades_reader, fault.record.notes)

    def test_zombie_writer_paused_past_its_session_timeout(
        self, producer_v2: Any, trade_factory: Any, writer_group: Any, chaos_session: Any, trades_reader: Any,
        verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """writer-1 is frozen (typically holding rows) for 8 s, past its 3 s session timeout: the group evicts it
        and writer-2 takes its partitions. Thawed, the zombie must not write or commit stale data: no trade
        twice in Iceberg, the group's committed offsets never go backwards, and the lag recovers."""
        group = writer_group(2, batch_seconds=3.0)
        produce(producer_v2, trade_factory, 200)
        assert producer_v2.flush(30) == 0
        survivor = group.member("writer-2")
        with (
            CommittedOffsets(group, trades_reader.topic, [0, 1, 2]) as offsets,
            service_failure("writer-1", duration_seconds=8, mode="pause", session=chaos_session) as fault,
        ):
            taken_over = assignments(survivor) + 1
            under_load(producer_v2, trade_factory, 1.0)
            wait_for(lambda: assignments(survivor) >= taken_over, 7.0, "writer-2 to take over the frozen partitions")
            fault.record.notes["evicted_while_frozen"] = True
        under_load(producer_v2, trade_factory, 1.0)
        assert producer_v2.flush(30) == 0
        verify_no_loss(iceberg=True)
        lag_recovers(group, trades_reader, fault.record.notes)
        fault.record.notes["committed_samples"] = offsets.samples
        assert offsets.backwards == [], (
            f"committed offsets went backwards (partition, was, became): {offsets.backwards}"
        )

    def test_partitions_added_mid_run(
        self, make_producer: Any, trade_factory: Any, writer_group: Any, k2_stack: Any, chaos_session: Any,
        trades_reader: Any, verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """The trades topic grows from 3 to 6 partitions while trades flow (on Tansu, which lacks CreatePartitions,
        through its store: k2.stack.topics). Producer and writers pick the new partitions up; every trade reaches
        Iceberg exactly once and the lag recovers on all six. Symbols that move partition lose Kafka's
        per-partition order, so order is not checked here."""
        group = writer_group(2)  # they notice the growth themselves (k2.platform.consumer.GROWTH_CHECK_S)
        producer = make_producer(kafka_overrides={"topic.metadata.refresh.interval.ms": 1000})
        under_load(producer, trade_factory, 1.0)
        started = time.time()
        added = k2_stack.add_partitions(trades_reader.topic, 6)
        effect = record_action(chaos_session, "add_partitions", "kafka", started, added.to_dict())
        under_load(producer, trade_factory, 2.0)
        assert producer.flush(30) == 0
        verify_no_loss(iceberg=True, ordered=False)
        used = sorted({record.position[0] for record in trades_reader.read()})
        effect["partitions_used"] = used
        assert set(used) & {3, 4, 5}, f"no trade landed on a new partition (used: {used})"
        lag_recovers(group, trades_reader, effect)
