"""Probe of a Tansu 0.6 group-coordinator bug the consumer suite ran into: when one of two members leaves a
group (LeaveGroup, a graceful close) in the last moments of the group's first join, the group never assigns
again: neither the member that stayed nor a fresh member joining afterwards gets any partition.

Plain librdkafka consumers, no K2 code in the loop: per trial a new group, two members subscribe at once, one
closes `--leave-after` seconds later (Tansu completes the join ~2 s in with a 3 s session timeout), and the
other waits `--wait` seconds for an assignment; when none comes, a fresh member tries too.

    python -m benchmarks.tansu_leave_during_join [--trials 8] [--leave-after 1.95] [--wait 20]
"""

from __future__ import annotations

import argparse
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import fresh_dir, write
from k2.stack import LocalStack


@dataclass
class Member:
    consumer: Any
    assigned: list[float] = field(default_factory=list)  # when on_assign ran (inside poll)

    def poll(self, seconds: float) -> None:
        self.consumer.poll(seconds)

    def assigned_within(self, seconds: float, started: float) -> float | None:
        """Seconds from `started` to the first assignment, or None if none came within `seconds`."""
        while not self.assigned and time.monotonic() - started < seconds:
            self.poll(0.1)
        return self.assigned[0] - started if self.assigned else None


def member(bootstrap: str, group: str, topic: str) -> Member:
    from confluent_kafka import Consumer

    joined = Member(Consumer({"bootstrap.servers": bootstrap, "group.id": group, "session.timeout.ms": 3000,
                              "heartbeat.interval.ms": 500, "enable.auto.commit": False, "log_level": 0}))  # fmt: skip
    joined.consumer.subscribe([topic], on_assign=lambda _c, _p: joined.assigned.append(time.monotonic()))
    return joined


def trial(bootstrap: str, topic: str, leave_after: float, wait: float) -> dict[str, Any]:
    group = f"probe-{uuid.uuid4().hex[:8]}"
    leaving, staying = member(bootstrap, group, topic), member(bootstrap, group, topic)
    started = time.monotonic()
    while time.monotonic() - started < leave_after:
        leaving.poll(0.05)
        staying.poll(0.05)
    leaving.consumer.close()
    stayed = staying.assigned_within(leave_after + wait, started)
    staying.consumer.close()
    fresh = None
    if stayed is None:
        newcomer = member(bootstrap, group, topic)
        fresh = newcomer.assigned_within(wait, time.monotonic())
        newcomer.consumer.close()
    return {"stayed_assigned_after_s": stayed, "fresh_member_assigned_after_s": fresh, "stuck": stayed is None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--leave-after", type=float, default=1.95)
    parser.add_argument("--wait", type=float, default=20.0)
    args = parser.parse_args()
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    with fresh_dir() as data_dir, LocalStack(data_dir) as stack:
        bootstrap = stack.endpoints().kafka_bootstrap
        topic = f"probe-{uuid.uuid4().hex[:6]}"
        admin = AdminClient({"bootstrap.servers": bootstrap})  # kept referenced: a collected client fails its futures
        admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(10)
        trials = []
        for number in range(args.trials):
            trials.append(trial(bootstrap, topic, args.leave_after, args.wait))
            print(f"trial {number}: {trials[-1]}", flush=True)
    stuck = sum(t["stuck"] for t in trials)
    print(f"stuck for good: {stuck} of {len(trials)} (a fresh member assigned in none of them: "
          f"{all(t['fresh_member_assigned_after_s'] is None for t in trials if t['stuck'])})")  # fmt: skip
    write("tansu_leave_during_join", {"leave_after_s": args.leave_after, "wait_s": args.wait, "stuck": stuck,
                                      "trials": trials})  # fmt: skip


if __name__ == "__main__":
    main()
