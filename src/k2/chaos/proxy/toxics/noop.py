"""noop: passes everything through unchanged (Toxiproxy's `noop`; the toxic path's own cost, measurable)."""

from __future__ import annotations

from k2.chaos.proxy.toxic import Toxic, register


@register
class Noop(Toxic):
    """The base toxic's behaviour: every chunk as it came, the end of stream at once."""

    type_name = "noop"
