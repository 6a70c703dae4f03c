"""Label connections by what the client says first, for clients that a listener alone cannot tell apart.

`proxy.client_listener(label)` labels by the port a client dials. That is not enough for Kafka: after
bootstrap a client reconnects to whatever address the broker advertises, so every client ends up on the
same listener. A classifier peeks (without consuming) at the first bytes of a new connection and names
its label; the Kafka one reads `client.id` from the request header, which every Kafka request carries.
Only for protocols where the client speaks first: a client that stays silent is held for up to
`link.CLASSIFY_TIMEOUT` per peek, then keeps its listener's label.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Protocol

from k2.chaos.errors import InvalidFault

__all__ = ["Classifier", "KafkaClientId", "Peek"]

#: `peek(n)` returns the first `n` bytes the client sent without consuming them (fewer at EOF or timeout).
Peek = Callable[[int], bytes]


class Classifier(Protocol):
    """Names the label of a connection from its first bytes, or None to leave it on its listener's."""

    @property
    def labels(self) -> frozenset[str]:
        """Every label it can return (so toxics and partitions can name them before a client connects)."""
        ...

    def classify(self, peek: Peek) -> str | None: ...


class KafkaClientId:
    """Labels a Kafka connection by the `client.id` of its first request (exact match in `labels`).

    Request header v1 and v2 both start: int32 size, int16 api_key, int16 api_version, int32
    correlation_id, then client_id as an int16-length string, whatever the API version.
    """

    _FIXED = struct.Struct(">ihhih")

    def __init__(self, labels: Mapping[str, str]) -> None:
        if not labels or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in labels.items()):
            raise InvalidFault(
                f"KafkaClientId needs a mapping of client.id -> label, got {labels!r}; "
                "pass e.g. {'k2-producer': 'producer'}"
            )
        self._by_client_id = dict(labels)

    @property
    def labels(self) -> frozenset[str]:
        return frozenset(self._by_client_id.values())

    def classify(self, peek: Peek) -> str | None:
        head = peek(self._FIXED.size)
        if len(head) < self._FIXED.size:
            return None
        _size, _api_key, _version, _correlation, length = self._FIXED.unpack(head)
        if length <= 0:
            return None
        full = peek(self._FIXED.size + length)
        client_id = full[self._FIXED.size :].decode("utf-8", "replace")
        return self._by_client_id.get(client_id)
