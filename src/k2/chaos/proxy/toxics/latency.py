"""latency: delay each chunk by `latency` ± `jitter` ms, without ever reordering bytes."""

from __future__ import annotations

from dataclasses import dataclass

from k2.chaos.proxy.toxic import Attribute, Chunk, Steps, Toxic, ToxicContext, Wait, register


@dataclass
class _State:
    last_release: float = 0.0


@register
class Latency(Toxic):
    """The delay counts from when the chunk was read, so back-to-back chunks are delayed in parallel
    (a pipe with latency, not a queue of sleeps); a chunk never leaves before the one ahead of it.
    Jitter is drawn from `ctx.rng`, so the same seed gives the same delays."""

    type_name = "latency"
    ATTRIBUTES = (
        Attribute("latency", int, 0, minimum=0, aliases=("latency_ms",), help="delay in milliseconds"),
        Attribute("jitter", int, 0, minimum=0, aliases=("jitter_ms",), help="uniform +/- milliseconds"),
    )

    def new_state(self, ctx: ToxicContext) -> _State:
        return _State()

    def pipe(self, chunk: Chunk, ctx: ToxicContext) -> Steps:
        delay_ms = float(self.attributes["latency"])
        jitter = self.attributes["jitter"]
        if jitter:
            delay_ms += ctx.rng.uniform(-jitter, jitter)
        state: _State = ctx.state
        release = max(chunk.ts + max(0.0, delay_ms) / 1000.0, state.last_release)
        state.last_release = release
        yield Wait(release)  # interrupted or not, the chunk goes on: nothing is dropped
        yield chunk
