"""reset_peer: swallow data, then abort the connection with a TCP RST after `timeout` ms (0 = at once)."""

from __future__ import annotations

import math
from collections.abc import Iterator

from k2.chaos.proxy.toxic import Attribute, Chunk, Toxic, ToxicContext, Wait, register


@register
class ResetPeer(Toxic):
    """As in Toxiproxy, nothing gets through in this direction while the reset is pending (the data is
    dropped, as SO_LINGER 0 would drop it), and the end of stream waits for the reset too. The clock
    starts when the toxic starts on the connection, whether or not data flows; Toxiproxy starts it at
    the first chunk, which leaves an idle connection untouched."""

    type_name = "reset_peer"
    ATTRIBUTES = (Attribute("timeout", int, 0, minimum=0, help="milliseconds before the reset"),)

    def pipe(self, chunk: Chunk, ctx: ToxicContext) -> Iterator[Chunk]:
        return iter(())

    def on_eof(self, ctx: ToxicContext) -> Iterator[Wait]:
        yield Wait(math.inf)

    def deadline(self, ctx: ToxicContext) -> float | None:
        return ctx.started + float(self.attributes["timeout"]) / 1000.0

    def on_deadline(self, ctx: ToxicContext) -> None:
        ctx.reset_link()
