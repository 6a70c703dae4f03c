"""The workload's Iceberg writers: one consumer group, its members, and its committed offsets.

`ProcessWriters` runs each member as a process of a writer group (k2.scenarios.writer_group): every member is
a chaos target the nemesis may SIGKILL, stop, pause or limit, and a restarted member rejoins the group, so
rebalances happen as they do in production.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

from k2.platform.config import PlatformConfig

__all__ = ["ProcessWriters", "Writers", "committed_offsets", "default_writers"]

log = logging.getLogger(__name__)


class Writers(Protocol):
    group_id: str

    def start(self) -> None:
        """Launch every member and return at once (the pipeline waits until they commit on every partition)."""

    def names(self) -> list[str]:
        """The members' names, which are also their chaos target names when `targets()` offers them."""

    def targets(self) -> list[str]:
        """The members faults may act on (declared in the session by `declare`)."""

    def declare(self, session: Any) -> None: ...

    def dead(self) -> list[str]:
        """Members that are not running now."""

    def restart_dead(self) -> list[str]:
        """Start again every member that is not running; returns their names."""

    def committed(self, topic: str, partitions: list[int], timeout: float) -> dict[int, int]: ...

    def close(self) -> None: ...


class ProcessWriters:
    """`count` writer processes of one group; a planted writer bug goes to each through its command line and
    the environment that must agree with it (k2.platform.planted)."""

    def __init__(
        self,
        config: PlatformConfig,
        group_id: str,
        count: int,
        *,
        planted_bug: str | None = None,
        batch_seconds: float = 0.5,
    ) -> None:
        from k2.platform.planted import CONTEXT_ENV, ENV
        from k2.scenarios.writer_group import WriterGroup

        self.group_id, self.count = group_id, count
        self._root = Path(tempfile.mkdtemp(prefix="k2-explore-writers-"))
        planted = {ENV: planted_bug, CONTEXT_ENV: group_id} if planted_bug else {}
        self.group = WriterGroup(
            config,
            group_id,
            root=self._root,
            batch_seconds=batch_seconds,
            writer_args=["--planted-bug", planted_bug] if planted_bug else [],
            env=planted,
        )

    def start(self) -> None:
        self.group.start(self.count, wait=False)

    def names(self) -> list[str]:
        return [m.name for m in self.group.members()]

    def targets(self) -> list[str]:
        return self.names()

    def declare(self, session: Any) -> None:
        self.group.declare(session)

    def dead(self) -> list[str]:
        return [m.name for m in self.group.members() if not m.alive]

    def restart_dead(self) -> list[str]:
        return [self.group.restart(name).name for name in self.dead()]

    def committed(self, topic: str, partitions: list[int], timeout: float) -> dict[int, int]:
        return committed_offsets(self.group.config, self.group_id, topic, partitions, timeout)

    def close(self) -> None:
        try:
            self.group.undeclare()
            self.group.close()
        finally:
            shutil.rmtree(self._root, ignore_errors=True)


def committed_offsets(
    config: PlatformConfig, group_id: str, topic: str, partitions: list[int], timeout: float
) -> dict[int, int]:
    """The group's committed offset per partition (-1: none yet), read from the broker within `timeout`."""
    from confluent_kafka import Consumer, TopicPartition

    reader = Consumer(
        {
            **config.kafka_base(),
            "group.id": group_id,
            "log_level": 2,
            "client.id": "checker",
            "socket.timeout.ms": max(1000, int(timeout * 1000)),
        }
    )
    try:
        found = reader.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout)
    finally:
        reader.close()
    return {tp.partition: tp.offset for tp in found}


def default_writers(count: int = 2) -> tuple[Any, list[str]]:
    """The writers a run uses (a factory for the pipeline) and the names faults may target."""
    return _process_writers, [f"writer-{i + 1}" for i in range(count)]


def _process_writers(config: PlatformConfig, group_id: str, count: int, planted_bug: str | None) -> Writers:
    return ProcessWriters(config, group_id, count, planted_bug=planted_bug)
