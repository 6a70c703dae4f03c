"""Which toxics run on a connection: each toxic's toxicity roll, from the connection's own random stream.

Every toxic on every connection gets a stream of its own, `k2.chaos.seeds.rng_for(seed, f"{proxy}:{toxic}:{n}")`
(n: the connection's number since the seed was set): its first draw is the toxicity roll and the toxic
draws its jitter or slice sizes from the rest. So the same seed and the same connection order make the
same choices whatever else runs, and a rebuild (another toxic added) rolls the same again. The rolls are
counted per toxic, for the API and the report.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from k2.chaos.proxy.pipe import Binding, Pipe
from k2.chaos.proxy.toxic import Stream, Toxic
from k2.chaos.seeds import rng_for

if TYPE_CHECKING:
    from k2.chaos.proxy.link import Link


class Decisions:
    """Per toxic name: on how many connections its roll applied it, and on how many it did not.

    Rolls are recorded from every connection loop, so each change holds a lock (a rebuild, not a packet)."""

    def __init__(self) -> None:
        self._counts: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def start(self, name: str) -> None:
        with self._lock:
            self._counts[name] = [0, 0]

    def forget(self, name: str) -> None:
        with self._lock:
            self._counts.pop(name, None)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()

    def view(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {name: {"applied": a, "skipped": s} for name, (a, s) in self._counts.items()}

    def record(self, pipe: Pipe, name: str, applied: bool) -> None:
        """Count a roll once per connection; an update that changes the toxicity re-rolls and moves it."""
        with self._lock:
            counts = self._counts.setdefault(name, [0, 0])
            previous = pipe.decided.get(name)
            if previous is applied:
                return
            if previous is not None:
                counts[0 if previous else 1] -= 1
            counts[0 if applied else 1] += 1
            pipe.decided[name] = applied


def rebuild(
    link: Link, toxics: Sequence[Toxic], seed: int, number: int, removed: set[str] | None, decisions: Decisions
) -> None:
    """Recompute both chains of `link`, keeping the bindings (and their state) of the toxics that stay.

    `removed` names toxics gone for good (they get `on_remove`), as opposed to replaced by an update.
    """
    names = {t.name for t in toxics}
    for stream in Stream:
        pipe = link.pipe(stream)
        for gone in [n for n in pipe.decided if n not in names]:
            del pipe.decided[gone]
        old = {id(b.toxic): b for b in pipe.chain}
        chain: list[Binding] = []
        for toxic in toxics:
            if toxic.stream is not stream or not toxic.applies_to(link.label):
                continue
            binding = old.get(id(toxic))
            if binding is None:
                rng = rng_for(seed, f"{link.proxy.name}:{toxic.name}:{number}")
                applied = rng.random() < toxic.toxicity
                decisions.record(pipe, toxic.name, applied)
                if not applied:
                    continue  # this connection is spared: it keeps the fast path
                binding = Binding(pipe, toxic, rng)
            chain.append(binding)
        pipe.set_chain(tuple(chain), removed or set())
