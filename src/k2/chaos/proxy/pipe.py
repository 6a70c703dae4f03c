"""One direction of one connection, run by the event loop: a fast copy, and a toxic chain when needed.

Fast path (no toxic applies to this direction of this connection): each time the source is readable,
one `recv_into` the loop's shared buffer and one `send` to the destination. What the destination does
not take is kept (the only per-connection copy) and the source is not read again until it has gone,
so a slow reader pushes back on the sender through TCP, exactly as without the proxy. A direction that
moves bulk (a read of `BULK_AFTER` bytes or more) gets a read buffer of its own, so what the destination
does not take yet stays where it was read instead of being copied out of the shared one.

Not `splice()`: through a kernel pipe the proxy spent as much CPU per GB as with `recv_into`/`send`
(0.19-0.22 s), the receiver more (it copies out of many small page fragments), and bulk was 6-36%
slower in six interleaved comparisons on a 2-core machine.

Toxic path: each read is timestamped and, when the chain is busy, queued (bounded: past `QUEUE_LIMIT` bytes
the source is not read, so a stalled chain pushes back too); the chain runs each chunk depth-first through
the toxics' generators, inline until something waits (only then is a generator kept as a frame); a `Wait`
parks the chain on a loop timer. When the chain becomes empty again and the queue has drained, the pipe
returns to the fast path. Chains are swapped on live connections, so adding or
removing a toxic takes effect on connections that are already open; a removed toxic's wait is
interrupted so that it flushes what it holds.

Memory per direction is bounded: at most one read (`READ_SIZE`) waiting for the destination, plus at
most `QUEUE_LIMIT` + one read queued for a toxic chain; `buffered` says how much is held right now.
"""

from __future__ import annotations

import functools
import math
import random
import socket
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from k2.chaos.proxy import _net
from k2.chaos.proxy.reactor import SCRATCH_SIZE, Timer, Watch
from k2.chaos.proxy.toxic import Chunk, Stream, Toxic, Wait

if TYPE_CHECKING:
    from k2.chaos.proxy.link import Link

QUEUE_LIMIT = 1 << 20  # bytes queued for a stalled chain before the source is no longer read
READ_SIZE = SCRATCH_SIZE  # one read, into the loop's shared buffer (`Reactor.scratch`) or a bulk one's own
BULK_AFTER = 128 << 10  # a read this large means bulk: the direction gets a read buffer of its own
_DONE = object()  # what `next` gives for a toxic generator that has finished


class Binding:
    """A toxic running on one pipe: the `ToxicContext` a toxic sees."""

    def __init__(self, pipe: Pipe, toxic: Toxic, rng: random.Random) -> None:
        self._pipe = pipe
        self.toxic = toxic
        self.rng = rng
        self.label = pipe.link.label
        self.started = time.monotonic()
        self.alive = True
        self.state: Any = toxic.new_state(self)
        self.timer: Timer | None = None

    def close_link(self) -> None:
        self._pipe.link.close(reason=f"toxic {self.toxic.name}")

    def reset_link(self) -> None:
        self._pipe.link.reset(reason=f"toxic {self.toxic.name}")


class _Frame:
    """A toxic generator in progress on one item, and the chain position its output goes to."""

    __slots__ = ("binding", "chain", "index", "steps", "value")

    def __init__(self, steps: Iterable[Any], chain: tuple[Binding, ...], index: int, binding: Binding | None):
        self.steps: Iterator[Any] = iter(steps)  # a generator (every toxic's pipe()) is its own iterator
        self.chain = chain
        self.index = index
        self.binding = binding
        self.value: bool | None = None


class Pipe:
    """Moves bytes from `src` to `dst` for one stream of a link (loop thread only)."""

    def __init__(self, link: Link, stream: Stream) -> None:
        self.link = link
        self.stream = stream
        self.src: socket.socket | None = None
        self.dst: socket.socket | None = None
        self.src_watch: Watch | None = None
        self.dst_watch: Watch | None = None
        self.bytes = 0
        self.closing = False
        self.chain: tuple[Binding, ...] = ()
        self.decided: dict[str, bool] = {}  # toxic name -> applied?, for the toxicity counts
        self._out: memoryview | None = None  # read but not yet taken by the destination
        self._own: memoryview | None = None  # bulk: this direction's own read buffer
        self._scratch = link.reactor.scratch  # the buffer its loop's connections share
        self._eof_read = False
        self._queue: deque[Chunk | None] = deque()  # None marks end of stream
        self._queued = 0
        self._frames: list[_Frame] = []
        self._parked: _Frame | None = None  # the frame waiting on a timer (or forever)
        self._timer: Timer | None = None
        self._pumping = False

    @property
    def direct(self) -> bool:
        return not self.chain and not self._queue and not self._frames

    @property
    def buffered(self) -> int:
        """Bytes this direction holds right now (waiting for the destination or for a toxic); safe to read
        from another thread (stats), as the loop may drop `_out` at any moment."""
        out = self._out
        return (len(out) if out is not None else 0) + self._queued

    def start(self, src: socket.socket, dst: socket.socket, src_watch: Watch, dst_watch: Watch) -> None:
        self.src, self.dst, self.src_watch, self.dst_watch = src, dst, src_watch, dst_watch
        src_watch.set(read=True)

    # --- the chain (changed by the proxy, in the loop) -------------------------------------------

    def set_chain(self, chain: tuple[Binding, ...], removed: set[str]) -> None:
        """Install a new chain; bindings no longer in it are interrupted (and flush what they hold).

        `removed` names toxics that are gone for good (not replaced by an update): they get `on_remove`.
        """
        keep = {id(b) for b in chain}
        dropped = [b for b in self.chain if id(b) not in keep]
        self.chain = chain
        for binding in dropped:
            binding.alive = False
            if binding.timer is not None:
                binding.timer.cancel()
            if binding.toxic.name in removed:
                binding.toxic.on_remove(binding)
        for binding in chain:
            if binding.timer is None and binding.alive:
                at = binding.toxic.deadline(binding)
                if at is not None:
                    binding.timer = self.link.reactor.at(at, functools.partial(self._deadline, binding))
        parked = self._parked
        if parked is not None and parked.binding is not None and not parked.binding.alive:
            self._resume(parked, False)
        elif not self.closing and self.src_watch is not None:
            self._pump()

    def _deadline(self, binding: Binding) -> None:
        if binding.alive and not self.closing:
            binding.toxic.on_deadline(binding)

    def stop(self) -> None:
        """The link is going away: drop what is held and stop every timer."""
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()
        for binding in self.chain:
            binding.alive = False
            if binding.timer is not None:
                binding.timer.cancel()
        self._queue.clear()
        self._queued = 0
        self._frames.clear()
        self._parked = None
        self._out = None
        self._own = None

    # --- readiness (loop callbacks) ---------------------------------------------------------------

    def readable(self) -> None:
        if self.chain or self._queue or self._frames:
            self._read_for_chain()
            return
        buffer = self._scratch if self._own is None else self._own
        try:
            n = self.src.recv_into(buffer)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.link.fail(self, exc)
            return
        if not n:
            self._read_eof()
            self._forward_eof()
            return
        self._send(buffer[:n], copy=self._own is None)
        if n >= BULK_AFTER and self._own is None:
            self._own = _net.scratch_buffer(READ_SIZE)

    def _read_for_chain(self) -> None:
        """The toxic path: queue what was read, timestamped, as a bytes of its own, and run the chain."""
        assert self.src is not None
        try:
            n = self.src.recv_into(self._scratch)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.link.fail(self, exc)
            return
        if not n:
            self._read_eof()
            self._queue.append(None)
        elif self._idle:  # nothing ahead of it: straight into the chain, without a trip through the queue
            self._feed(Chunk(bytes(self._scratch[:n]), time.monotonic()), self.chain, 0)
        else:
            self._queue.append(Chunk(bytes(self._scratch[:n]), time.monotonic()))
            self._queued += n
            if self._queued > QUEUE_LIMIT:
                self._set_reading(False)
        self._pump()

    @property
    def _idle(self) -> bool:
        """The chain may take a new chunk now: nothing queued, in progress, parked or waiting to be sent."""
        return not (self._queue or self._frames or self._pumping or self.closing) and self._out is None

    def _read_eof(self) -> None:
        self._eof_read = True
        self._set_reading(False)

    def writable(self) -> None:
        out, self._out = self._out, None
        if out is None:
            self._set_writing(False)
            return
        if self._send(out, copy=False):
            self._set_writing(False)
            self._resume_reading()
            if not self.direct:
                self._pump()

    def _send(self, data: memoryview, *, copy: bool) -> bool:
        """Send what the destination takes now; keep the rest for `writable`. True if all went."""
        if self.closing:
            return False
        assert self.dst is not None
        try:
            sent = self.dst.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self.link.fail(self, exc)
            return False
        self.bytes += sent
        if sent == len(data):
            return True
        rest = data[sent:]
        self._out = memoryview(bytes(rest)) if copy else rest
        self._set_reading(False)
        self._set_writing(True)
        return False

    def _resume_reading(self) -> None:
        if not self._eof_read and not self.closing and self._queued <= QUEUE_LIMIT:
            self._set_reading(True)

    def _set_reading(self, on: bool) -> None:
        if self.src_watch is not None:
            self.src_watch.set(read=on)

    def _set_writing(self, on: bool) -> None:
        if self.dst_watch is not None:
            self.dst_watch.set(write=on)

    def _forward_eof(self) -> None:
        if self.dst is not None and not self.closing:
            _net.shutdown(self.dst, socket.SHUT_WR)
        self.link.eof_forwarded(self)

    # --- the toxic chain --------------------------------------------------------------------------

    def _pump(self) -> None:
        """Run queued items through the chain until it waits, the destination is full, or all is done."""
        if self._pumping:
            return
        self._pumping = True
        try:
            frames, queue = self._frames, self._queue
            while not self.closing and self._out is None and self._parked is None:
                if frames:
                    self._step(frames[-1])
                elif queue:
                    item = queue.popleft()
                    if item is None:
                        self._push_eof(self.chain)
                    else:
                        self._queued -= len(item.data)
                        self._resume_reading()
                        self._feed(item, self.chain, 0)
                else:
                    break
        finally:
            self._pumping = False

    def _feed(self, chunk: Chunk, chain: tuple[Binding, ...], index: int) -> None:
        """Run `chunk` through the chain from `index` on, depth-first and inline for as long as nothing has
        to wait: a toxic's generator is only kept as a frame (for `_pump`) once it, or a toxic after it,
        waits or finds the destination full. Most chunks pass without a frame, which is the toxic path's
        cost per chunk."""
        while index < len(chain) and not chain[index].alive:
            index += 1
        if index == len(chain):
            if chunk.data:
                self._send(memoryview(chunk.data), copy=False)
            return
        binding = chain[index]
        steps = iter(binding.toxic.pipe(chunk, binding))
        frames = self._frames
        mark = len(frames)  # where this generator's frame goes if it must wait: under the frames it caused
        while True:
            if self._out is not None or self._parked is not None or self.closing or len(frames) > mark:
                frames.insert(mark, _Frame(steps, chain, index, binding))
                return
            out = next(steps, _DONE)
            if out is _DONE:
                return
            if isinstance(out, Chunk):
                self._feed(out, chain, index + 1)
            else:
                frame = _Frame(steps, chain, index, binding)
                frames.insert(mark, frame)
                self._take(frame, out)
                return

    def _step(self, frame: _Frame) -> None:
        value = frame.value
        if value is None:  # resumed after a chunk; next() with a default raises nothing
            out = next(frame.steps, _DONE)
        else:  # resumed after a wait: it learns whether the wait ran its course
            frame.value = None
            send = getattr(frame.steps, "send", None)
            try:
                out = send(value) if send is not None else next(frame.steps)
            except StopIteration:
                out = _DONE
        if out is _DONE:
            self._frames.pop()
            if frame.binding is None:  # the end-of-stream frame finished: the close goes on
                self._forward_eof()
            return
        self._take(frame, out)

    def _take(self, frame: _Frame, out: object) -> None:
        """What the top frame's generator yielded: a chunk goes on down the chain, a wait parks the chain."""
        if isinstance(out, Chunk):  # the common case first
            self._feed(out, frame.chain, frame.index + 1)
        elif isinstance(out, Wait):
            alive = frame.binding is None or frame.binding.alive
            if not alive:
                frame.value = False
            elif out.until <= time.monotonic():
                frame.value = True
            else:
                self._parked = frame
                if out.until != math.inf:
                    self._timer = self.link.reactor.at(out.until, lambda: self._resume(frame, True))
        else:
            raise TypeError(f"toxic yielded {out!r}; yield a Chunk or a Wait")

    def _resume(self, frame: _Frame, value: bool) -> None:
        if self._parked is not frame:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._parked = None
        frame.value = value
        self._pump()

    def _push_eof(self, chain: tuple[Binding, ...]) -> None:
        """The end of stream through the chain: each live toxic's `on_eof` (which may wait) in chain
        order, then the FIN (the frame without a binding, at the bottom)."""
        self._frames.append(_Frame((), chain, len(chain), None))
        for binding in reversed(chain):
            steps = binding.toxic.on_eof(binding) if binding.alive else None
            if steps is not None:
                self._frames.append(_Frame(steps, chain, len(chain), binding))
