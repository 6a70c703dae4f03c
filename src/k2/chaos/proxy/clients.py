"""Client labels of a proxy: one listener per label, plus an optional classifier that labels by content."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from k2.chaos.errors import InvalidFault
from k2.chaos.proxy import _net
from k2.chaos.proxy.classify import Classifier
from k2.chaos.proxy.listener import Listener
from k2.chaos.proxy.reactor import Reactor

if TYPE_CHECKING:
    import socket

DEFAULT_LABEL = "default"
Accept = Callable[["socket.socket", tuple[str, int], Listener], None]


class Clients:
    """Listeners by label and the classifier; used from the proxy's event loop only."""

    def __init__(self, owner: str, reactor: Reactor, accept: Accept) -> None:
        self._owner = owner
        self._reactor = reactor
        self._accept = accept
        self.listeners: dict[str, Listener] = {}
        self.classifier: Classifier | None = None

    def open(self, label: str, address: _net.Address, paused: int) -> Listener:
        """Bind and start a listener for `label`, paused `paused` times (disabled proxy, partitions)."""
        listener = Listener(self._reactor, label, address, self._accept, self._owner)
        self.listeners[label] = listener
        for _ in range(paused):
            listener.pause()
        listener.start()
        return listener

    def known(self) -> list[str]:
        classified = sorted(self.classifier.labels) if self.classifier is not None else []
        return list(self.listeners) + [label for label in classified if label not in self.listeners]

    def check(self, labels: Iterable[str] | None) -> None:
        known = self.known()
        unknown = [label for label in labels or () if label not in known]
        if unknown:
            raise InvalidFault(
                f"client labels {unknown} are unknown on proxy {self._owner!r} (known: {known}); create them "
                "with proxy.client_listener(label) or proxy.classify_clients(...) first"
            )

    def matching(self, clients: Iterable[str] | None) -> list[Listener]:
        wanted = None if clients is None else set(clients)
        return [lst for label, lst in self.listeners.items() if wanted is None or label in wanted]

    def close_all(self) -> None:
        listeners = list(self.listeners.values())
        self.listeners.clear()
        for listener in listeners:
            listener.close()
