"""`Proxy`: a TCP proxy in front of one service, with toxics, partitions and named client listeners."""

from __future__ import annotations

import functools
import logging
import math
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from k2.chaos.errors import InvalidFault
from k2.chaos.proxy import _net
from k2.chaos.proxy.chains import Decisions, rebuild
from k2.chaos.proxy.classify import Classifier
from k2.chaos.proxy.clients import DEFAULT_LABEL, Clients
from k2.chaos.proxy.errors import AlreadyExists, NotFound
from k2.chaos.proxy.link import Link
from k2.chaos.proxy.listener import Listener
from k2.chaos.proxy.partition import Partition
from k2.chaos.proxy.reactor import Reactor, connection_loops, shared
from k2.chaos.proxy.refusal import KINDS, MAX_LINGERING, HttpRefusal, http_forbidden
from k2.chaos.proxy.toxic import Stream, Toxic, create_toxic

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_LABEL", "Proxy"]
T = TypeVar("T")
_REFUSAL_LOG_EVERY = 10.0  # seconds between log lines about refused callers


class Proxy:
    """Forwards `listen` -> `upstream` on loopback, on the process's event loop; faults are added while
    it runs.

    With no toxic on a direction of a connection, that direction is a plain `recv_into`/`send` copy.
    Toxics, partitions and `disable()` act on connections that are already open, not only on new ones.
    Every toxic on every connection draws from its own random stream, derived from `seed`, the proxy's
    name, the toxic's name and the connection's number since the seed was set; so a run with the same
    seed and the same connection order makes the same toxicity rolls and the same jitter (the seed is
    logged when it was not given). The rolls are counted per toxic (`decisions()`).

    An `owner_only` proxy admits only connections whose client socket belongs to the user this process
    runs as, or to root (the kernel says who, see k2.httpsafe.peer); others are turned away at accept,
    before a byte reaches the service: reset, or with `refuse_as="http"` answered 403 (see `refusal`).
    For a service that tells its callers apart by that same uid (the schema registry's changes are
    owner-only): through a plain proxy it would see every caller as the proxy's user. Other proxies
    never look the caller up.

    Every method may be called from any thread: it runs in the loop and returns when it took effect.

    Threads: listeners, toxics, partitions and counters belong to the control loop (`reactor`); each
    connection lives on one of the connection loops (`loops`; by default the process's, see
    `reactor.use_loops`), dealt in turn at accept. Whatever the control loop does to a connection it does
    in that connection's loop (`_on_links`), and waits for it. What a connection's loop reads of the proxy
    is never changed in place (the toxic and partition lists are replaced whole); what it writes (its end,
    the toxicity counts) is behind a lock.
    """

    def __init__(
        self,
        name: str,
        listen: _net.Address | str = (_net.LOOPBACK, 0),
        upstream: _net.Address | str = (_net.LOOPBACK, 0),
        *,
        seed: int | None = None,
        enabled: bool = True,
        connect_timeout: float = 5.0,
        reactor: Reactor | None = None,
        loops: Sequence[Reactor] | None = None,
        owner_only: bool = False,
        refuse_as: str = "reset",
    ) -> None:
        if not name or not isinstance(name, str) or "/" in name:
            raise InvalidFault(f"proxy name {name!r} is invalid; use a non-empty string without '/'")
        self.name = name
        self.listen = _net.parse_address(listen, f"proxy {name!r} listen")
        self.upstream = _net.parse_address(upstream, f"proxy {name!r} upstream")
        if self.upstream[1] == 0:
            raise InvalidFault(f"proxy {name!r} has no upstream port; pass upstream=('127.0.0.1', port)")
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
        if seed is None:
            log.info("proxy %s: toxicity seed %d (pass seed= to replay)", name, self.seed)
        self.connect_timeout = connect_timeout
        if not isinstance(owner_only, bool):
            raise InvalidFault(f"proxy {name!r}: owner_only must be true or false, got {owner_only!r}")
        self.owner_only = owner_only
        if refuse_as not in KINDS:
            raise InvalidFault(f"proxy {name!r}: refuse_as {refuse_as!r} is unknown; use one of {', '.join(KINDS)}")
        self.refuse_as = refuse_as
        self._refusals: set[HttpRefusal] = set()
        self._caller_check: Callable[[socket.socket], str | None] | None = None
        if owner_only:
            from k2.chaos.proxy.callers import owner_check  # only for owner-only proxies

            self._caller_check = owner_check()
        self.reactor = reactor or shared()
        # where connections run, dealt in turn: given, else the control loop given, else the process's
        self._loops = list(loops or ([reactor] if reactor is not None else connection_loops()))
        self._enabled = enabled
        self._changed = threading.Condition()  # notified when the number of open connections changes
        self._clients = Clients(name, self.reactor, self._accept)
        self._toxics: list[Toxic] = []
        self._decisions = Decisions()
        self._links: set[Link] = set()
        self._partitions: list[Partition] = []
        self._partition_seq = 0
        self._seq = 0
        self._seq_at_seed = 0  # connections are numbered from the seed for their random streams
        self._started = False
        self._refused = 0
        self._refused_callers = 0
        self._refusal_logged_at = -math.inf
        self._ended_bytes = {Stream.UPSTREAM: 0, Stream.DOWNSTREAM: 0}

    def _in_loop(self, fn: Callable[[], T]) -> T:
        return self.reactor.call(fn)

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Proxy:
        def start() -> None:
            if self._started:
                return
            main = self._open_listener(DEFAULT_LABEL, self.listen)
            self._started = True
            log.info("proxy %s: %s:%d -> %s:%d", self.name, *main.address, *self.upstream)

        self._in_loop(start)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every listener and connection (FIN)."""

        def stop() -> None:
            if not self._started:
                return
            self._started = False
            self._clients.close_all()
            self._on_links(lambda link: link.close(reason="proxy stopped"))
            for refused in list(self._refusals):
                refused.close(reset=True)

        self.reactor.call(stop, timeout)

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def listen_address(self) -> _net.Address:
        """Where clients connect (the real port when 0 was asked for)."""
        listener = self._clients.listeners.get(DEFAULT_LABEL)
        if listener is None:
            raise InvalidFault(f"proxy {self.name!r} is not started; call start() first")
        return listener.address

    def client_listener(self, label: str, port: int = 0) -> _net.Address:
        """An extra listen address for the client called `label`; connections there carry that label.

        Toxics and partitions can be limited to labels (`clients=[...]`), which is how one client is cut
        off while another is not, whatever source ports their libraries pick. Idempotent per label.
        """
        if not label or not isinstance(label, str):
            raise InvalidFault(f"client label {label!r} is invalid; use a non-empty string")

        def open_listener() -> _net.Address:
            if not self._started:
                raise InvalidFault(f"proxy {self.name!r} is not started; call start() before client_listener()")
            existing = self._clients.listeners.get(label)
            if existing is not None:
                return existing.address
            return self._open_listener(label, (_net.LOOPBACK, port)).address

        return self._in_loop(open_listener)

    def classify_clients(self, classifier: Classifier | None) -> None:
        """Label new connections by their first bytes, e.g. `KafkaClientId({"k2-producer": "producer"})`.

        For clients that one listener cannot tell apart (Kafka clients reconnect to the advertised broker
        address after bootstrap). A classified label is refused by resetting its new connections.
        """
        self._in_loop(lambda: setattr(self._clients, "classifier", classifier))

    @property
    def classifier(self) -> Classifier | None:
        return self._clients.classifier

    def labels(self) -> list[str]:
        """Every client label: one per listener (`default` first), then those a classifier can give."""
        return self._in_loop(self._clients.known)

    def _open_listener(self, label: str, address: _net.Address) -> Listener:
        """Bind a listener for `label`, refusing clients while the proxy is disabled or partitioned."""
        if address == self.upstream:
            raise InvalidFault(
                f"proxy {self.name!r}: upstream {address[0]}:{address[1]} is its own listen address, which "
                "would loop; point upstream at the service"
            )
        listener = self._clients.open(label, address, paused=int(not self._enabled))
        if listener.address == self.upstream:  # port 0 landed on a dead upstream's port: pick another
            listener.close()
            return self._open_listener(label, address)
        for partition in self._partitions:
            partition._listener_added(listener)
        return listener

    # --- enable / disable -------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self._enabled

    def disable(self) -> None:
        """Like Toxiproxy's disable: the ports refuse connections and open connections are closed."""

        def disable() -> None:
            if not self._enabled:
                return
            self._enabled = False
            for listener in self._clients.listeners.values():
                listener.pause()
            self._on_links(lambda link: link.close(reason="proxy disabled"))

        self._in_loop(disable)

    def enable(self) -> None:
        def enable() -> None:
            if self._enabled:
                return
            self._enabled = True
            for listener in self._clients.listeners.values():
                listener.resume()

        self._in_loop(enable)

    # --- toxics ---------------------------------------------------------------------------------

    def add_toxic(
        self,
        type: str,
        stream: str | Stream = "downstream",
        toxicity: float = 1.0,
        name: str | None = None,
        clients: Sequence[str] | None = None,
        **attributes: Any,
    ) -> Toxic:
        """Build, validate and apply a toxic to open and future connections; returns it."""
        toxic = create_toxic(type, name=name, stream=stream, toxicity=toxicity, clients=clients, **attributes)
        return self.install(toxic)

    def install(self, toxic: Toxic) -> Toxic:
        """Apply an already built toxic."""

        def install() -> None:
            if any(t.name == toxic.name for t in self._toxics):
                raise AlreadyExists(
                    f"toxic {toxic.name!r} already exists on proxy {self.name!r}; remove it first or pass another name="
                )
            self._clients.check(toxic.clients)
            self._toxics = [*self._toxics, toxic]
            self._decisions.start(toxic.name)
            self._refresh_all()

        self._in_loop(install)
        log.info("proxy %s: added %r", self.name, toxic)
        return toxic

    def update_toxic(self, name: str, toxicity: float | None = None, **attributes: Any) -> Toxic:
        """Change a toxic's toxicity or attributes; open connections switch to the new values."""

        def update() -> Toxic:
            index = self._index(name)
            new = self._toxics[index].replace(toxicity=toxicity, attributes=attributes)
            self._toxics = [new if i == index else t for i, t in enumerate(self._toxics)]
            self._refresh_all()
            return new

        new = self._in_loop(update)
        log.info("proxy %s: updated %r", self.name, new)
        return new

    def remove_toxic(self, name: str) -> None:
        """Remove a toxic; data it holds is flushed to its destination, not dropped (a toxic that ends
        connections, like `timeout`, closes the ones it held instead, as in Toxiproxy)."""

        def remove() -> None:
            index = self._index(name)
            self._toxics = [t for i, t in enumerate(self._toxics) if i != index]
            self._decisions.forget(name)
            self._refresh_all(removed={name})

        self._in_loop(remove)
        log.info("proxy %s: removed toxic %s", self.name, name)

    def toxic(self, name: str) -> Toxic:
        return self._in_loop(lambda: self._toxics[self._index(name)])

    def toxics(self) -> list[Toxic]:
        return list(self._toxics)

    def decisions(self) -> dict[str, dict[str, int]]:
        """Per toxic: on how many connections its toxicity roll applied it, and on how many it did not."""
        return self._in_loop(self._decisions.view)

    def set_seed(self, seed: int) -> None:
        """Replay from here: new random streams from `seed`, connections numbered again from 1."""
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidFault(f"seed {seed!r} of proxy {self.name!r} is not an integer; pass a whole number")

        def set_seed() -> None:
            self.seed = seed
            self._seq_at_seed = self._seq

        self._in_loop(set_seed)
        log.info("proxy %s: toxicity seed %d", self.name, seed)

    def reset(self) -> None:
        """Remove every toxic, lift every partition and enable the proxy (Toxiproxy's /reset)."""
        for partition in list(self._partitions):
            partition.restore()

        def clear() -> None:
            removed = {t.name for t in self._toxics}
            self._toxics = []
            self._decisions.clear()
            self._refresh_all(removed=removed)

        self._in_loop(clear)
        self.enable()

    def _index(self, name: str) -> int:
        for i, toxic in enumerate(self._toxics):
            if toxic.name == name:
                return i
        known = ", ".join(t.name for t in self._toxics) or "none"
        raise NotFound(f"toxic {name!r} not found on proxy {self.name!r}; its toxics are: {known}")

    # --- partitions -----------------------------------------------------------------------------

    def partition(
        self, mode: str = "refuse", direction: str = "both", clients: Sequence[str] | None = None
    ) -> Partition:
        """Cut clients off from the service; `.restore()` on the result undoes it (idempotent).

        `refuse`: the ports of the chosen clients refuse new connections and their open ones are reset.
        `blackhole`: connections are still accepted but nothing flows in `direction`; data is held (TCP
        pushes back on the sender) and flows again on restore, as after a real partition heals.
        """

        def create() -> Partition:
            self._clients.check(clients)
            self._partition_seq += 1
            partition = Partition(self, self._partition_seq, mode, direction, clients)
            self._partitions = [*self._partitions, partition]
            return partition

        partition = self._in_loop(create)
        try:
            partition._apply()
        except BaseException:
            partition.restore()
            raise
        return partition

    def _partition_ended(self, partition: Partition) -> None:
        self._partitions = [p for p in self._partitions if p is not partition]

    def _listeners_for(self, clients: tuple[str, ...] | None) -> list[Listener]:
        return self._clients.matching(clients)

    def _links_for(self, clients: tuple[str, ...] | None) -> list[Link]:
        return [link for link in self._open_links() if clients is None or link.label in clients]

    def _open_links(self) -> list[Link]:
        with self._changed:
            return list(self._links)

    def _on_links(self, act: Callable[[Link], None], links: Iterable[Link] | None = None) -> None:
        """Run `act` on each link (all open ones by default) in that link's own loop; return when done."""
        by_loop: dict[Reactor, list[Link]] = {}
        for link in self._open_links() if links is None else links:
            by_loop.setdefault(link.reactor, []).append(link)
        for loop, group in by_loop.items():
            loop.call(functools.partial(_each, act, group))

    # --- connections ----------------------------------------------------------------------------

    def _accept(self, conn: socket.socket, peer: tuple[str, int], listener: Listener) -> None:
        if not (self._started and self._enabled and listener.listening):
            self._refused += 1  # accepted in the instant before the port was closed
            _net.reset(conn)
            conn.close()
            return
        if self._caller_check is not None and not self._admits(conn, peer):
            return
        self._seq += 1
        link = Link(self, conn, peer, listener.label, self._seq, self._loops[self._seq % len(self._loops)])
        with self._changed:
            self._links.add(link)
            self._changed.notify_all()
        if link.reactor is self.reactor:
            self._begin(link)
        else:
            link.reactor.post(lambda: self._begin(link))

    def _begin(self, link: Link) -> None:
        """In the link's loop: its chains, then its sockets (unless something closed it meanwhile)."""
        if not link.closing:
            self._refresh(link)
            link.start()

    def _admits(self, conn: socket.socket, peer: tuple[str, int]) -> bool:
        """An owner-only proxy's gate: turn away a connection another user's socket opened."""
        assert self._caller_check is not None
        refusal = self._caller_check(conn)
        if refusal is None:
            return True
        self._refused_callers += 1
        now = time.monotonic()
        if now - self._refusal_logged_at >= _REFUSAL_LOG_EVERY:  # a flood of refusals is one line per interval
            self._refusal_logged_at = now
            log.warning(
                "proxy %s: refused the connection from %s:%d: %s (%d refused so far)",
                self.name, *peer, refusal, self._refused_callers,
            )  # fmt: skip
        if self.refuse_as == "http" and len(self._refusals) < MAX_LINGERING:
            answer = http_forbidden(
                f"{refusal}: proxy {self.name!r} admits only the stack owner's and root's connections; "
                "run the client as one of them"
            )
            refused = HttpRefusal(self.reactor, conn, answer, self._refusals.discard)
            if not refused.closed:
                self._refusals.add(refused)
            return False
        _net.reset(conn)
        conn.close()
        return False

    def _relabel(self, link: Link, label: str) -> bool:
        """A classifier named the link's label: re-apply toxics; False if a partition refuses the label."""
        link.label = label
        self._refresh(link)
        return not any(p.mode == "refuse" and p.active and p.covers(label) for p in self._partitions)

    def _link_ended(self, link: Link) -> None:
        with self._changed:
            self._ended_bytes[Stream.UPSTREAM] += link.up.bytes
            self._ended_bytes[Stream.DOWNSTREAM] += link.down.bytes
            self._links.discard(link)
            self._changed.notify_all()

    def _refresh_all(self, removed: set[str] | None = None) -> None:
        self._on_links(lambda link: self._refresh(link, removed or set()))

    def _refresh(self, link: Link, removed: set[str] | None = None) -> None:
        """Both chains of `link` from the toxics (see `chains`: the seeded, counted toxicity rolls)."""
        if not link.closing:
            number = link.seq - self._seq_at_seed
            rebuild(link, self._toxics, self.seed, number, removed, self._decisions)

    @property
    def connections(self) -> int:
        """Connections open right now."""
        return len(self._links)

    @property
    def connections_total(self) -> int:
        """Connections accepted since start."""
        return self._seq

    def wait_connections(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until exactly `count` connections are open; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._links) == count, timeout)

    def stats(self) -> dict[str, Any]:
        """Counters, and the bytes the proxy holds for its open connections (each bounded, see `pipe`)."""
        return self._in_loop(self._stats)

    def _stats(self) -> dict[str, Any]:
        """A snapshot; counters of links on other loops may be a few reads behind."""
        with self._changed:
            links = list(self._links)
            ended = dict(self._ended_bytes)
        up = ended[Stream.UPSTREAM] + sum(link.up.bytes for link in links)
        down = ended[Stream.DOWNSTREAM] + sum(link.down.bytes for link in links)
        labels: dict[str, int] = dict.fromkeys(self._clients.known(), 0)
        for link in links:
            labels[link.label] = labels.get(link.label, 0) + 1
        held = [link.buffered for link in links]
        return {
            "connections": len(links),
            "connections_total": self._seq,
            "connections_refused": self._refused,
            "connections_refused_callers": self._refused_callers,
            "bytes_upstream": up,
            "bytes_downstream": down,
            "connections_by_client": labels,
            "bytes_held": sum(held),
            "bytes_held_max_per_connection": max(held, default=0),
        }

    # --- Toxiproxy-style view and update --------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Toxiproxy's proxy shape, plus `toxicity_decisions` (per toxic: connections applied / skipped),
        which Toxiproxy clients ignore."""

        def view() -> dict[str, Any]:
            listener = self._clients.listeners.get(DEFAULT_LABEL)
            listen = listener.address if listener else self.listen
            return {
                "name": self.name,
                "listen": _net.format_address(listen),
                "upstream": _net.format_address(self.upstream),
                "enabled": self._enabled,
                "owner_only": self.owner_only,
                "refuse_as": self.refuse_as,
                "toxics": [t.to_json() for t in self._toxics],
                "toxicity_decisions": self._decisions.view(),
            }

        return self._in_loop(view)

    def update(
        self,
        *,
        listen: _net.Address | str | None = None,
        upstream: _net.Address | str | None = None,
        enabled: bool | None = None,
    ) -> None:
        """Change fields like Toxiproxy: a new listen or upstream address restarts the proxy's connections."""
        new_listen = _net.parse_address(listen, f"proxy {self.name!r} listen") if listen is not None else None
        new_up = _net.parse_address(upstream, f"proxy {self.name!r} upstream") if upstream is not None else None

        def relocate() -> None:
            current = self._clients.listeners.get(DEFAULT_LABEL)
            move = new_listen is not None and (current is None or new_listen[1] not in (0, current.address[1]))
            if new_up is not None and new_up != self.upstream:
                self.upstream = new_up
                self._on_links(lambda link: link.close(reason="upstream changed"))
            if move and new_listen is not None:
                self.listen = new_listen
                self._open_listener(DEFAULT_LABEL, new_listen)
                if current is not None:
                    current.close()
                self._on_links(
                    lambda link: link.close(reason="listen address changed"), self._links_for((DEFAULT_LABEL,))
                )

        self._in_loop(relocate)
        if enabled is True:
            self.enable()
        elif enabled is False:
            self.disable()


def _each(act: Callable[[Link], None], links: list[Link]) -> None:
    for link in links:
        act(link)
