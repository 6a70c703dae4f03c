"""bandwidth: limit a direction to `rate` KB/s (1 KB = 1000 bytes, as in Toxiproxy)."""

from __future__ import annotations

from dataclasses import dataclass

from k2.chaos.proxy.toxic import Attribute, Chunk, Steps, Toxic, ToxicContext, Wait, register


@dataclass
class _State:
    next_free: float = 0.0


@register
class Bandwidth(Toxic):
    """Sends data in slices of 100 ms worth, each when its transmission slot ends; 0 = unlimited.

    Slots follow one absolute timeline: a slice sent late (a busy machine, a coarse timer) makes the
    next wait shorter, so the lateness is caught up instead of being lost slice after slice. The
    timeline restarts only when data arrives after the link went idle (read after the last slot ended),
    so an idle spell is not paid back as a burst.
    """

    type_name = "bandwidth"
    ATTRIBUTES = (Attribute("rate", int, 0, minimum=0, help="kilobytes per second, 0 = unlimited"),)

    def new_state(self, ctx: ToxicContext) -> _State:
        return _State()

    def pipe(self, chunk: Chunk, ctx: ToxicContext) -> Steps:
        rate = self.attributes["rate"] * 1000
        if rate <= 0:
            yield chunk
            return
        state: _State = ctx.state
        state.next_free = max(state.next_free, chunk.ts)
        data, step = chunk.data, max(1, rate // 10)
        for offset in range(0, len(data), step):
            piece = data[offset : offset + step]
            state.next_free += len(piece) / rate
            if not (yield Wait(state.next_free)):
                yield Chunk(data[offset:], chunk.ts)  # removed: flush the rest at once
                return
            yield Chunk(piece, chunk.ts)
