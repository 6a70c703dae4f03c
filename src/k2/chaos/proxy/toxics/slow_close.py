"""slow_close: when one side closes, hold the close back for `delay` ms."""

from __future__ import annotations

import time
from collections.abc import Iterator

from k2.chaos.proxy.toxic import Attribute, Toxic, ToxicContext, Wait, register


@register
class SlowClose(Toxic):
    """Data passes untouched; only the FIN that ends this direction is delayed."""

    type_name = "slow_close"
    ATTRIBUTES = (Attribute("delay", int, 0, minimum=0, help="milliseconds to delay the close"),)

    def on_eof(self, ctx: ToxicContext) -> Iterator[Wait]:
        yield Wait(time.monotonic() + self.attributes["delay"] / 1000.0)
