"""limit_data: close the connection once `bytes` bytes have passed in this direction."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from k2.chaos.proxy.toxic import Attribute, Chunk, Toxic, ToxicContext, register


@dataclass
class _State:
    sent: int = 0


@register
class LimitData(Toxic):
    """Exactly `bytes` bytes get through, then both sides get a FIN; the rest is dropped by design."""

    type_name = "limit_data"
    ATTRIBUTES = (Attribute("bytes", int, 0, minimum=0, help="bytes to let through before closing"),)

    def new_state(self, ctx: ToxicContext) -> _State:
        return _State()

    def pipe(self, chunk: Chunk, ctx: ToxicContext) -> Iterator[Chunk]:
        state: _State = ctx.state
        remaining = self.attributes["bytes"] - state.sent
        if remaining > 0:
            piece = chunk.data[:remaining]
            state.sent += len(piece)
            yield Chunk(piece, chunk.ts)
        if state.sent >= self.attributes["bytes"]:
            ctx.close_link()
