"""`k2 chaos inject`: one fault, ad hoc, on a running stack, through the same spec, session and journal as
a run. It prints the measured effect, holds until the duration ends (or Ctrl-C / SIGTERM), restores and
prints the restore's effect; if it is killed, the session's watchdog restores the fault.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from k2.chaos.effects import Effect
from k2.chaos.faults.catalogue import kind
from k2.chaos.faults.injection import Terminated
from k2.chaos.faults.spec import FaultSpec
from k2.testing import chaos_session

if TYPE_CHECKING:
    from k2.stack.local import LocalStack

__all__ = ["build_spec", "inject_and_hold"]

_HOLD_POLL_S = 3600.0  # an indefinite hold wakes up this often, only to wait again


def build_spec(kind_name: str, service: str, params: list[str], duration_s: float | None) -> FaultSpec[Any]:
    """A validated spec from the command line's `KIND SERVICE --param k=v ... --for DURATION`."""
    entry = kind(kind_name)
    by_name = {p.name: p for p in entry.params}
    values: dict[str, Any] = {}
    for item in params:
        name, sep, text = item.partition("=")
        if not sep or name not in by_name:
            known = ", ".join(p.describe() for p in entry.params) or "none"
            from k2.chaos.errors import InvalidFault

            raise InvalidFault(f"--param {item!r}: give NAME=VALUE with a parameter of {kind_name}: {known}")
        values[name] = by_name[name].parse(text)
    return entry.build(service, duration_s if duration_s is not None else entry.duration_default, **values)


def inject_and_hold(
    stack: LocalStack, spec: FaultSpec[Any], *, say: Callable[[str], None], on_injected: Callable[[], None]
) -> int:
    """Inject `spec` on `stack`, hold it, restore it; 0 when it ran its course, 130 when interrupted."""
    interrupted = False
    with chaos_session(stack) as session:
        handle = session.inject(spec)
        assert handle.effect is not None
        say(f"injected {spec!r} (journal id {handle.journal_id})")
        say(f"  effect: {_show(handle.effect)}")
        on_injected()
        with handle:
            try:
                if spec.duration_s is not None:
                    handle.wait(spec.duration_s)  # leaving the block waits out any rest, then restores
                else:
                    while not handle.wait(_HOLD_POLL_S):
                        pass
            except (KeyboardInterrupt, Terminated):
                interrupted = True
                say("interrupted: restoring")
                handle.restore()  # now: leaving the block normally would wait out the duration
        if handle.restore_effect is not None:
            say(f"restored after {(handle.record.restored_at or 0) - (handle.record.injected_at or 0):.2f}s")
            say(f"  effect: {_show(handle.restore_effect)}")
    return 130 if interrupted else 0


def _show(effect: Effect) -> str:
    return f"{effect.summary()} [{effect.backend}, {effect.duration_s * 1000:.1f} ms]"
