"""Network partitions through a proxy: full or one-way, for every client or only some labels."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from k2.chaos.errors import InvalidFault
from k2.chaos.proxy.errors import NotFound

if TYPE_CHECKING:
    from k2.chaos.proxy.listener import Listener
    from k2.chaos.proxy.proxy import Proxy

log = logging.getLogger(__name__)

MODES = ("refuse", "blackhole")
DIRECTIONS = ("both", "upstream", "downstream")


class Partition:
    """An applied partition; `restore()` undoes exactly what it did, once, and is safe to call again.

    Use it as a context manager to restore even on errors or Ctrl-C.
    """

    def __init__(self, proxy: Proxy, seq: int, mode: str, direction: str, clients: Sequence[str] | None) -> None:
        if mode not in MODES:
            raise InvalidFault(f"partition mode {mode!r} is unknown; use one of {list(MODES)}")
        if direction not in DIRECTIONS:
            raise InvalidFault(f"partition direction {direction!r} is unknown; use one of {list(DIRECTIONS)}")
        if mode == "refuse" and direction != "both":
            raise InvalidFault(
                f"a 'refuse' partition cuts whole connections, so direction={direction!r} cannot apply; "
                "use mode='blackhole' for a one-way partition"
            )
        if clients is not None and (isinstance(clients, str) or not clients):
            raise InvalidFault(f"clients {clients!r} must be a non-empty list of labels, or None for every client")
        self.proxy = proxy
        self.seq = seq
        self.mode = mode
        self.direction = direction
        self.clients: tuple[str, ...] | None = tuple(clients) if clients is not None else None
        self._lock = threading.Lock()
        self._paused: list[Listener] = []
        self._toxics: list[str] = []
        self._restored = False

    @property
    def active(self) -> bool:
        return not self._restored

    @property
    def streams(self) -> list[str]:
        return ["upstream", "downstream"] if self.direction == "both" else [self.direction]

    def _apply(self) -> None:
        if self.mode == "refuse":
            self.proxy.reactor.call(self._refuse)
        else:
            for stream in self.streams:
                name = f"partition-{self.seq}-{stream}"
                self.proxy.add_toxic("blackhole", stream=stream, name=name, clients=self.clients, mode="hold")
                self._toxics.append(name)
        log.info("proxy %s: %r applied", self.proxy.name, self)

    def _refuse(self) -> None:
        for listener in self.proxy._listeners_for(self.clients):
            self._pause(listener)
        reason = f"partition {self.seq}"
        self.proxy._on_links(lambda link: link.reset(reason=reason), self.proxy._links_for(self.clients))

    def _pause(self, listener: Listener) -> None:
        with self._lock:
            if self._restored:
                return
            self._paused.append(listener)
        listener.pause()

    def covers(self, label: str) -> bool:
        return self.clients is None or label in self.clients

    def _listener_added(self, listener: Listener) -> None:
        """A client listener created during the partition must be cut off too if it is in scope."""
        if self.mode == "refuse" and self.covers(listener.label):
            self._pause(listener)

    def restore(self) -> None:
        """Lift the partition: ports accept again, held data flows again. Idempotent."""
        with self._lock:
            if self._restored:
                return
            self._restored = True
            paused, self._paused = self._paused, []
            toxics, self._toxics = self._toxics, []

        def resume() -> None:
            for listener in paused:
                listener.resume()

        self.proxy.reactor.call(resume)
        for name in toxics:
            with contextlib.suppress(NotFound):  # already removed, e.g. by proxy.reset()
                self.proxy.remove_toxic(name)
        self.proxy.reactor.call(lambda: self.proxy._partition_ended(self))
        log.info("proxy %s: %r restored", self.proxy.name, self)

    def __enter__(self) -> Partition:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def __repr__(self) -> str:
        who = "all clients" if self.clients is None else f"clients {list(self.clients)}"
        state = "active" if self.active else "restored"
        return f"<Partition #{self.seq} {self.mode} {self.direction} {who} {state}>"
