"""Per-client rate limiting for the query API: a token bucket per client id (the `token-bucket` library).

Why this library: its buckets refill on the monotonic clock, so a clock jump on the API host neither
frees a flood nor locks clients out for an hour (`limits` and most others keep windows on the wall
clock). Each client gets `burst` requests at once and `rate` a second after that, and at most `max_in_flight`
requests running at a time (so one client's admitted burst cannot queue up the query engine's few
workers for everyone); a refused request is told when to come back (Retry-After).

The client id is what the client says it is (`X-Client-Id`), else its address: this isolates a noisy
client from the others, it is not authentication. Distinct ids are bounded (`max_clients`): past that,
new ids share one overflow bucket, so inventing ids cannot grow memory or escape the limit.
"""

from __future__ import annotations

import math
import threading

import token_bucket

__all__ = ["OVERFLOW", "ClientLimiter"]

OVERFLOW = "~overflow"


class ClientLimiter:
    def __init__(self, rate: float, burst: int, *, max_in_flight: int = 4, max_clients: int = 10_000) -> None:
        if not 0 < rate <= 1_000_000:
            raise ValueError(f"rate={rate}: give requests per second, 0 < rate <= 1000000")
        if not 1 <= burst <= 1_000_000:
            raise ValueError(f"burst={burst}: give 1..1000000 requests")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight={max_in_flight}: give at least 1")
        self.rate, self.burst, self.max_clients, self.max_in_flight = rate, burst, max_clients, max_in_flight
        self._in_flight: dict[str, int] = {}
        self._storage = token_bucket.MemoryStorage()
        self._limiter = token_bucket.Limiter(rate, burst, self._storage)
        self._clients: set[str] = set()
        self._lock = threading.Lock()
        self.rejected = 0

    def acquire(self, client: str) -> tuple[str, float | None]:
        """(the bucket's key, None) when the request may go: call `release(key)` when it is done; else
        (key, seconds until the client may come back)."""
        with self._lock:
            if client not in self._clients:
                if len(self._clients) >= self.max_clients:
                    client = OVERFLOW
                self._clients.add(client)
            if self._in_flight.get(client, 0) >= self.max_in_flight:
                self.rejected += 1
                return client, 1.0
            if self._limiter.consume(client):
                self._in_flight[client] = self._in_flight.get(client, 0) + 1
                return client, None
            self.rejected += 1
            missing = 1.0 - self._storage.get_token_count(client)
            return client, max(missing, 0.0) / self.rate

    def release(self, key: str) -> None:
        with self._lock:
            left = self._in_flight.get(key, 0) - 1
            if left > 0:
                self._in_flight[key] = left
            else:
                self._in_flight.pop(key, None)

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        """Retry-After is whole seconds (RFC 9110); never 0, so a client that obeys it does not spin."""
        return str(max(1, math.ceil(seconds)))

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)
