"""Epoll loop threads that run the proxies' sockets and timers in this process: one, or one per core.

Why not a thread per direction per connection: under one interpreter lock, hundreds of threads spend
their time handing the lock around (200 connections x 100 round trips took 10x longer than with a loop).
Here every socket is non-blocking and watched by its loop's `epoll`; toxics wait on timers, not in sleeps.
A second loop pays where the first is saturated: a loop spends most of its time in the kernel's TCP path,
which runs without the interpreter lock (see `use_loops`).

Contract:
- Every callback (socket readiness, timer, posted call) runs in the loop thread, one at a time, and must
  not block. Code outside the loop changes loop-owned state only through `call()` (runs the function in
  the loop and returns its result or raises its exception, with a deadline) or `post()`. A process may
  run several loops (`use_loops`); a loop's `scratch` buffer is touched by its own thread only.
- A callback that raises is logged and the loop goes on; owners pass `on_error` to tear down what the
  failure leaves behind.
- Timers fire at their absolute monotonic time: the wait is `select()` on the epoll fd, whose timeout
  has microsecond resolution (`epoll_wait` rounds up to whole milliseconds), and the thread asks the
  kernel for a 1 µs timer slack.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import mmap
import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

__all__ = ["Reactor", "Timer", "Watch", "connection_loops", "shared", "use_loops"]

T = TypeVar("T")
READ, WRITE, EDGE = select.EPOLLIN, select.EPOLLOUT, select.EPOLLET
_ALERT = select.EPOLLERR | select.EPOLLHUP
_READABLE, _WRITABLE = READ | _ALERT, WRITE | _ALERT
_CALL_TIMEOUT = 30.0  # a loop that does not answer a control call within this is wedged: say so
SCRATCH_SIZE = 1 << 20  # bytes of the loop's shared read buffer: the largest single read
_COARSE = 0.002  # timers further away than this are waited for with epoll's millisecond timeout first


class Timer:
    """A pending timer; `cancel()` is idempotent and safe after it fired."""

    __slots__ = ("callback", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        self.callback = None


class Watch:
    """One socket's interest in the loop: what to call when it is readable and when it is writable.

    Interest that is off is not registered at all, so a socket nobody reads (back-pressure) cannot make
    the loop spin on its hang-up or error bits; they show when reading or writing resumes.
    """

    __slots__ = ("_mask", "_reactor", "fd", "on_error", "on_read", "on_write")

    def __init__(
        self,
        reactor: Reactor,
        sock: socket.socket,
        on_read: Callable[[], None] | None = None,
        on_write: Callable[[], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._reactor = reactor
        self.fd = sock.fileno()
        self.on_read = on_read
        self.on_write = on_write
        self.on_error = on_error
        self._mask = 0

    def set(self, *, read: bool | None = None, write: bool | None = None, edge: bool | None = None) -> None:
        mask = self._mask
        for flag, on in ((READ, read), (WRITE, write), (EDGE, edge)):
            if on is not None:
                mask = mask | flag if on else mask & ~flag
        if not mask & (READ | WRITE):
            mask = 0
        if mask == self._mask or self.fd < 0:
            return
        self._reactor._update(self, self._mask, mask)
        self._mask = mask

    def close(self) -> None:
        """Stop watching (call before closing the socket)."""
        if self._mask and self.fd >= 0:
            self._reactor._update(self, self._mask, 0)
        self._mask = 0
        self.fd = -1


class Reactor:
    """The loop. `shared()` gives the process-wide one; tests and the daemon use that."""

    def __init__(self, name: str = "k2-proxy-loop") -> None:
        # One read at a time per loop lands here, so the loop's connections share it; each loop has its own
        # (anonymous memory: pages cost nothing until a read touches them).
        self.scratch = memoryview(mmap.mmap(-1, SCRATCH_SIZE))
        self._epoll = select.epoll()
        self._watches: dict[int, Watch] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._calls: deque[Callable[[], None]] = deque()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, READ)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- for code outside the loop ----------------------------------------------------------------

    @property
    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def post(self, fn: Callable[[], None]) -> None:
        """Run `fn` in the loop soon; returns at once."""
        self._calls.append(fn)
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"\0")

    def call(self, fn: Callable[[], T], timeout: float = _CALL_TIMEOUT) -> T:
        """Run `fn` in the loop and return its result (or raise its exception); inline if already there."""
        if self.in_loop:
            return fn()
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            try:
                box.append((True, fn()))
            except BaseException as exc:  # handed back to the caller, raised there
                box.append((False, exc))
            finally:
                done.set()

        self.post(run)
        if not done.wait(timeout):
            raise TimeoutError(f"the proxy loop did not run a control call within {timeout:.0f} s")
        ok, value = box[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    # --- for code in the loop ---------------------------------------------------------------------

    def at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Call `callback` at monotonic time `when` (at once if it has passed)."""
        timer = Timer(when, callback)
        heapq.heappush(self._timers, (when, next(self._order), timer))
        return timer

    def watch(
        self,
        sock: socket.socket,
        on_read: Callable[[], None] | None = None,
        on_write: Callable[[], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> Watch:
        return Watch(self, sock, on_read, on_write, on_error)

    def _update(self, watch: Watch, old: int, new: int) -> None:
        if not new:
            self._epoll.unregister(watch.fd)
            self._watches.pop(watch.fd, None)
        elif not old:
            self._epoll.register(watch.fd, new)
            self._watches[watch.fd] = watch
        else:
            self._epoll.modify(watch.fd, new)

    # --- the loop ---------------------------------------------------------------------------------

    def _run(self) -> None:
        _tighten_timer_slack()
        epoll, watches, timers, calls = self._epoll, self._watches, self._timers, self._calls
        epfd = epoll.fileno()
        while not self._stopping:
            # Control calls first: a fault asked for while data flows takes effect before more data moves.
            for _ in range(len(calls)):
                self._guard(calls.popleft())
            while timers and timers[0][2].callback is None:  # cancelled: drop, so an idle loop sleeps
                heapq.heappop(timers)
            if calls:
                events = epoll.poll(0)
            elif timers:
                delay = timers[0][0] - time.monotonic()
                if delay <= 0:
                    events = epoll.poll(0)
                elif delay > _COARSE:  # epoll rounds up to whole ms: wake a little early, then the fine wait
                    events = epoll.poll(delay - _COARSE)
                else:  # select() for its microsecond timeout; it says when the epoll fd has events
                    ready, _, _ = select.select([epfd], [], [], delay)
                    events = epoll.poll(0) if ready else []
            else:
                events = epoll.poll()
            for fd, mask in events:
                watch = watches.get(fd)
                if watch is None:
                    if fd == self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 4096)
                    continue
                try:
                    if mask & _READABLE and watch._mask & READ:
                        callback = watch.on_read
                        if callback is not None:
                            callback()
                    if mask & _WRITABLE and watch._mask & WRITE:
                        callback = watch.on_write
                        if callback is not None:
                            callback()
                except Exception as exc:  # a bug in one connection must not stop every other one
                    self._failed(watch, exc)
            if timers:
                now = time.monotonic()
                while timers and timers[0][0] <= now:
                    timer = heapq.heappop(timers)[2]
                    callback, timer.callback = timer.callback, None
                    if callback is not None:
                        self._guard(callback)

    @staticmethod
    def _guard(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # a bug in one timer or call must not stop the loop
            log.exception("proxy loop: callback %r failed", fn)

    @staticmethod
    def _failed(watch: Watch, exc: Exception) -> None:
        log.error("proxy loop: a socket callback failed", exc_info=exc)
        if watch.on_error is not None:
            try:
                watch.on_error(exc)
            except Exception:
                log.exception("proxy loop: error handler failed")


def _tighten_timer_slack() -> None:
    """Ask for 1 µs timer slack (default 50 µs) so toxic timers fire when they are due (Linux >= 4.6)."""
    path = f"/proc/self/task/{threading.get_native_id()}/timerslack_ns"
    with contextlib.suppress(OSError), open(path, "w") as slack:
        slack.write("1000")


_shared: Reactor | None = None
_more: list[Reactor] = []  # the connection loops after the first (`use_loops`)
_shared_lock = threading.Lock()
MAX_LOOPS = 16


def shared() -> Reactor:
    """The process's loop, started on first use (a daemon thread: it never keeps the process alive)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Reactor()
        return _shared


def use_loops(count: int) -> None:
    """Carry connections on `count` loops instead of one (the daemon's `--loops`; one by default).

    The interpreter lock is shared, but a loop spends most of its time in the kernel's TCP path (send and
    recv release the lock), so a second loop can let a second core forward: with 1,000 connections busy, one
    loop sat at 100% of a core. On 2 cores shared with the clients it did not pay (the daemon's DEFAULT_LOOPS).
    Loops are added, never removed: connections already on one stay there.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_LOOPS:
        raise ValueError(f"loops {count!r} is out of range; give 1 to {MAX_LOOPS} (1: everything on one loop)")
    shared()
    with _shared_lock:
        while 1 + len(_more) < count:
            _more.append(Reactor(f"k2-proxy-loop-{1 + len(_more)}"))


def connection_loops() -> list[Reactor]:
    """Every connection loop of this process; the first is `shared()`, which also runs the control calls."""
    first = shared()
    with _shared_lock:
        return [first, *_more]
