"""The workload's Iceberg writers: one consumer group, its members, and its committed offsets.

`ThreadWriters` runs the members as threads of the explorer's process. They cannot be killed on their own,
so they offer no chaos targets: the nemesis draws no writer fault while they are in use.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from k2.platform.config import PlatformConfig

__all__ = ["ThreadWriters", "Writers", "default_writers"]

log = logging.getLogger(__name__)


class Writers(Protocol):
    group_id: str

    def start(self) -> None:
        """Start every member and return once each consumes."""

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


class ThreadWriters:
    """`count` IcebergWriter threads in one consumer group (the stopgap until writer processes exist)."""

    def __init__(
        self,
        config: PlatformConfig,
        group_id: str,
        count: int,
        *,
        planted_bug: str | None = None,
        batch_seconds: float = 0.5,
    ) -> None:
        from k2.platform.writer import IcebergWriter

        self.config, self.group_id = config, group_id
        self._members = {
            f"writer-{i + 1}": IcebergWriter(
                config,
                group_id=group_id,
                batch_max_seconds=batch_seconds,
                retry_max=1.0,
                consumer_overrides={"client.id": "writer"},
                planted_bug=planted_bug,
            )
            for i in range(count)
        }

    def start(self) -> None:
        for writer in self._members.values():
            writer.start()

    def names(self) -> list[str]:
        return list(self._members)

    def targets(self) -> list[str]:
        return []

    def declare(self, session: Any) -> None:
        return None

    def dead(self) -> list[str]:
        return [n for n, w in self._members.items() if w._thread is not None and not w._thread.is_alive()]

    def restart_dead(self) -> list[str]:
        return []

    def committed(self, topic: str, partitions: list[int], timeout: float) -> dict[int, int]:
        return committed_offsets(self.config, self.group_id, topic, partitions, timeout)

    def close(self) -> None:
        threads = [threading.Thread(target=w.stop, args=(30.0,), daemon=True) for w in self._members.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(45.0)


def committed_offsets(
    config: PlatformConfig, group_id: str, topic: str, partitions: list[int], timeout: float
) -> dict[int, int]:
    """The group's committed offset per partition (-1: none yet), read from the broker within `timeout`."""
    from confluent_kafka import Consumer, TopicPartition

    reader = Consumer(
        {
            **config.kafka_base(),
            "group.id": group_id,
            "client.id": "checker",
            "socket.timeout.ms": max(1000, int(timeout * 1000)),
        }
    )
    try:
        found = reader.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout)
    finally:
        reader.close()
    return {tp.partition: tp.offset for tp in found}


def default_writers() -> tuple[None, list[str]]:
    """The writers a run uses (None: the pipeline's default, threads) and which of them faults may target."""
    return None, []
