"""reset_peer: abort the connection with a TCP RST after `timeout` ms (0 = at once)."""

from __future__ import annotations

from k2.chaos.proxy.toxic import Attribute, Toxic, ToxicContext, register


@register
class ResetPeer(Toxic):
    """Data flows normally until the reset (SO_LINGER 0 semantics: unsent data is discarded). The clock
    starts when the toxic starts on the connection, whether or not data flows; Toxiproxy starts it at
    the first chunk, which leaves an idle connection untouched."""

    type_name = "reset_peer"
    ATTRIBUTES = (Attribute("timeout", int, 0, minimum=0, help="milliseconds before the reset"),)

    def deadline(self, ctx: ToxicContext) -> float | None:
        return ctx.started + float(self.attributes["timeout"]) / 1000.0

    def on_deadline(self, ctx: ToxicContext) -> None:
        ctx.reset_link()
