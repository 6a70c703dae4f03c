"""One direction of one connection: a fast copy loop, and a toxic chain used only when needed.

Fast path (no toxic applies to this direction of this connection): the reader thread does
`recv_into` on a preallocated buffer and `sendall` straight to the destination, nothing else.

Toxic path: the reader timestamps each chunk and queues it (bounded, so a stalled chain pushes back on
the sender through TCP instead of buffering without limit); a worker thread runs each chunk through the
chain and sends what comes out. When the chain becomes empty again and the queue has drained, the pipe
returns to the fast path. Chains are swapped on live connections, so adding or removing a toxic takes
effect on connections that are already open.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from k2.chaos.proxy import _net
from k2.chaos.proxy.toxic import Chunk, Stream, Toxic

if TYPE_CHECKING:
    from k2.chaos.proxy.link import Link

log = logging.getLogger(__name__)

_MAX_WAIT = 1.0  # every condition wait re-checks its predicate at least this often
_QUEUE_LIMIT = 1 << 20  # bytes queued for a stalled chain before the reader stops reading


class Binding:
    """A toxic running on one pipe: the `ToxicContext` a toxic sees."""

    def __init__(self, pipe: Pipe, toxic: Toxic, rng: random.Random) -> None:
        self._pipe = pipe
        self.toxic = toxic
        self.rng = rng
        self.label = pipe.link.label
        self.started = time.monotonic()
        self.alive = True
        self.fired = False
        self.state: Any = toxic.new_state(self)

    def wait_until(self, when: float) -> bool:
        return self._pipe.wait(self, when)

    def close_link(self) -> None:
        self._pipe.link.close(reason=f"toxic {self.toxic.name}")

    def reset_link(self) -> None:
        self._pipe.link.reset(reason=f"toxic {self.toxic.name}")


class Pipe:
    """Moves bytes from `src` to `dst` for one stream of a link."""

    def __init__(self, link: Link, stream: Stream, buffer_size: int) -> None:
        self.link = link
        self.stream = stream
        self.src: socket.socket | None = None
        self.dst: socket.socket | None = None
        self.bytes = 0
        self.direct = True
        self.closing = False
        self._buffer_size = buffer_size
        self._limit = _QUEUE_LIMIT
        self._cond = threading.Condition()
        self._queue: deque[Chunk | None] = deque()  # None marks end of stream
        self._queued = 0
        self._chain: tuple[Binding, ...] = ()
        self._worker: threading.Thread | None = None

    # --- control (any thread) -----------------------------------------------------------------

    @property
    def chain(self) -> tuple[Binding, ...]:
        return self._chain

    def set_chain(self, chain: tuple[Binding, ...]) -> None:
        """Install a new chain; bindings no longer in it are interrupted (and flush what they hold)."""
        with self._cond:
            keep = {id(b) for b in chain}
            for b in self._chain:
                if id(b) not in keep:
                    b.alive = False
            self._chain = chain
            if chain and not self.closing:
                self.direct = False
                if self._worker is None:
                    self._worker = self.link.spawn(self._work, f"{self.stream.value}-toxics")
            self._cond.notify_all()

    def rebuild(self, toxics: Iterable[Toxic], seed: str) -> None:
        """Recompute the chain from the proxy's toxics, keeping the bindings (and state) of those that stay.

        Toxicity is rolled per toxic per connection from `seed`, the toxic's name and the connection's
        number, so the roll is the same on every rebuild and in every run with the same seed.
        """
        old = {id(b.toxic): b for b in self._chain}
        chain: list[Binding] = []
        for toxic in toxics:
            if toxic.stream is not self.stream or not toxic.applies_to(self.link.label):
                continue
            binding = old.get(id(toxic))
            if binding is None or binding.toxic is not toxic:
                rng = random.Random(f"{seed}/{toxic.name}/{self.stream.value}/{self.link.seq}")
                if rng.random() >= toxic.toxicity:
                    continue  # this connection is spared: it keeps the fast path
                binding = Binding(self, toxic, rng)
            chain.append(binding)
        self.set_chain(tuple(chain))

    def stop(self) -> None:
        """Interrupt every wait; the link is going away."""
        with self._cond:
            self.closing = True
            for b in self._chain:
                b.alive = False
            self._cond.notify_all()

    # --- reader thread ------------------------------------------------------------------------

    def read_loop(self) -> None:
        src, dst = self.src, self.dst
        assert src is not None and dst is not None
        # An anonymous mapping, not a bytearray: pages are only touched (and resident) as far as reads
        # actually fill them, so a large buffer costs a small-message connection nothing.
        buf = mmap.mmap(-1, self._buffer_size)
        view = memoryview(buf)
        try:
            while True:
                n = src.recv_into(view)
                if not n:
                    break
                if self.direct or not self._enqueue(bytes(view[:n])):
                    dst.sendall(view[:n])
                    self.bytes += n
        except OSError as exc:
            self.link.fail(self, exc)
            return
        finally:
            with contextlib.suppress(BufferError):  # an export kept alive by a traceback: GC frees it later
                view.release()
                buf.close()
        if not self._enqueue(None):
            self._forward_eof()

    def _enqueue(self, data: bytes | None) -> bool:
        """Queue for the toxic chain; False means the pipe went direct again and the caller sends itself."""
        with self._cond:
            while not self.closing and not self.direct and self._queued > self._limit:
                self._cond.wait(_MAX_WAIT)  # the chain is stalled: stop reading, so TCP pushes back
            if self.closing:
                return True
            if self.direct:
                return False
            self._queue.append(None if data is None else Chunk(data, time.monotonic()))
            self._queued += 0 if data is None else len(data)
            self._cond.notify_all()
            return True

    # --- worker thread ------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            while True:
                item = self._next_item()
                if item is False:
                    return
                if item is None:
                    self._run_eof()
                else:
                    assert isinstance(item, Chunk)
                    self._run(item, self._chain, 0)
        except OSError as exc:
            self.link.fail(self, exc)

    def _next_item(self) -> Chunk | bool | None:
        """Next queued item, servicing timers while idle; False once the link is closing."""
        while True:
            with self._cond:
                if self.closing:
                    return False
                if self._queue:
                    item = self._queue.popleft()
                    self._queued -= len(item.data) if item is not None else 0
                    self._cond.notify_all()
                    return item
                if not self._chain:
                    self.direct = True  # drained and nothing to apply: back to the fast path
                due, wake = self._timers()
                if not due:
                    self._cond.wait(min(_MAX_WAIT, max(0.0, wake - time.monotonic())))
            self._fire(due)

    def _run(self, chunk: Chunk, chain: tuple[Binding, ...], i: int) -> None:
        while i < len(chain) and not chain[i].alive:
            i += 1
        if i == len(chain):
            self._emit(chunk)
            return
        binding = chain[i]
        for out in binding.toxic.pipe(chunk, binding):
            if out.data:
                self._run(out, chain, i + 1)

    def _emit(self, chunk: Chunk) -> None:
        if self.closing or self.dst is None:
            return
        self.dst.sendall(chunk.data)
        self.bytes += len(chunk.data)

    def _run_eof(self) -> None:
        for binding in self._chain:
            if binding.alive:
                binding.toxic.on_eof(binding)
        self._forward_eof()

    def _forward_eof(self) -> None:
        if self.dst is not None and not self.closing:
            _net.shutdown(self.dst, socket.SHUT_WR)
        self.link.eof_forwarded(self)

    # --- waiting (worker thread, called by toxics through Binding.wait_until) --------------------

    def wait(self, binding: Binding, when: float) -> bool:
        while True:
            with self._cond:
                if not binding.alive or self.closing:
                    return False
                now = time.monotonic()
                if now >= when:
                    return True
                due, wake = self._timers()
                if not due:
                    self._cond.wait(min(_MAX_WAIT, when - now, max(0.0, wake - now)))
            self._fire(due)

    def _timers(self) -> tuple[list[Binding], float]:
        """Bindings whose deadline passed, and when the next one is due (called with the lock held)."""
        now = time.monotonic()
        due: list[Binding] = []
        wake = now + _MAX_WAIT
        for b in self._chain:
            if not b.alive or b.fired:
                continue
            at = b.toxic.deadline(b)
            if at is None:
                continue
            if at <= now:
                b.fired = True
                due.append(b)
            else:
                wake = min(wake, at)
        return due, wake

    def _fire(self, due: list[Binding]) -> None:
        for b in due:  # outside the lock: firing closes the link, which takes other pipes' locks
            b.toxic.on_deadline(b)
