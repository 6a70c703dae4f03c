"""slicer: cut chunks into small pieces (`average_size` ± `size_variation` bytes), `delay` µs apart."""

from __future__ import annotations

import time

from k2.chaos.errors import InvalidFault
from k2.chaos.proxy.toxic import Attribute, Chunk, Steps, Toxic, ToxicContext, Wait, register


@register
class Slicer(Toxic):
    """Exercises a client's handling of partial reads (a frame split across many recv calls)."""

    type_name = "slicer"
    ATTRIBUTES = (
        Attribute("average_size", int, None, minimum=1, help="average slice size in bytes"),
        Attribute("size_variation", int, 0, minimum=0, help="+/- bytes, less than average_size"),
        Attribute("delay", int, 0, minimum=0, help="microseconds between slices"),
    )

    def validate(self) -> None:
        if self.attributes["size_variation"] >= self.attributes["average_size"]:
            raise InvalidFault(
                f"slicer {self.name!r}: size_variation {self.attributes['size_variation']} must be smaller "
                f"than average_size {self.attributes['average_size']}; lower it"
            )

    def pipe(self, chunk: Chunk, ctx: ToxicContext) -> Steps:
        average, variation = self.attributes["average_size"], self.attributes["size_variation"]
        delay = self.attributes["delay"] / 1e6
        data, offset = chunk.data, 0
        while offset < len(data):
            size = average + (ctx.rng.randint(-variation, variation) if variation else 0)
            yield Chunk(data[offset : offset + size], chunk.ts)
            offset += size
            if offset < len(data) and delay and not (yield Wait(time.monotonic() + delay)):
                yield Chunk(data[offset:], chunk.ts)  # removed: the rest goes in one piece
                return
