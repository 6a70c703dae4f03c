"""timeout: stop all data in this direction and close the connection after `timeout` ms (0 = never)."""

from __future__ import annotations

import math
from collections.abc import Iterator

from k2.chaos.proxy.toxic import Attribute, Chunk, Steps, Toxic, ToxicContext, Wait, register


@register
class Timeout(Toxic):
    """Data is held, not dropped (TCP pushes back on the sender, as with a hung peer); Toxiproxy drops
    it, which leaves a gap in the byte stream that no real network can produce. As in Toxiproxy,
    removing the toxic closes the connections it held (their held data is never delivered). The clock
    starts when the toxic starts on the connection (when it is added, for a connection already open)."""

    type_name = "timeout"
    ATTRIBUTES = (Attribute("timeout", int, 0, minimum=0, help="milliseconds before the close, 0 = never"),)

    def pipe(self, chunk: Chunk, ctx: ToxicContext) -> Steps:
        yield Wait(math.inf)
        yield chunk

    def on_eof(self, ctx: ToxicContext) -> Iterator[Wait]:
        yield Wait(math.inf)

    def deadline(self, ctx: ToxicContext) -> float | None:
        timeout = self.attributes["timeout"]
        return ctx.started + timeout / 1000.0 if timeout else None

    def on_deadline(self, ctx: ToxicContext) -> None:
        ctx.close_link()

    def on_remove(self, ctx: ToxicContext) -> None:
        ctx.close_link()
