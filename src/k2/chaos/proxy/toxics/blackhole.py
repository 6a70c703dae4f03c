"""blackhole: nothing gets through in this direction while the connection stays open."""

from __future__ import annotations

import math
from collections.abc import Iterator

from k2.chaos.proxy.toxic import Attribute, Chunk, Steps, Toxic, ToxicContext, Wait, register


@register
class Blackhole(Toxic):
    """`mode="drop"` discards the data silently. `mode="hold"` keeps it back instead (TCP pushes back on
    the sender once buffers fill) and lets it through, intact and in order, when the toxic is removed,
    which is what a real network partition does to an open TCP connection when it heals. In both modes
    the end of stream is held until removal."""

    type_name = "blackhole"
    ATTRIBUTES = (Attribute("mode", str, "drop", choices=("drop", "hold"), help="drop or hold the data"),)

    def pipe(self, chunk: Chunk, ctx: ToxicContext) -> Steps:
        if self.attributes["mode"] == "drop":
            return
        yield Wait(math.inf)
        yield chunk

    def on_eof(self, ctx: ToxicContext) -> Iterator[Wait]:
        yield Wait(math.inf)
