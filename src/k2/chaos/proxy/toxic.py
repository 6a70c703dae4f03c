"""What every toxic shares, and the registry that finds a toxic by its type name.

A toxic is an immutable, validated value (type + stream + toxicity + attributes). It transforms a stream
of timestamped chunks for one direction of one connection; everything per-connection lives in the
`ToxicContext` handed to it, never on the toxic, so one toxic serves every connection.

Contract for toxic authors (the proxy runs every connection on one event loop, so nothing may block):
- `pipe()` is a generator: it yields the chunks to pass on for each chunk it gets, and to wait it
  yields `Wait(when)` (a monotonic time); the yield evaluates to True when the time came, False when
  the wait was interrupted (the toxic was removed or the connection is closing). After an interrupt it
  must yield what it holds at once: data in flight is flushed, never dropped (a toxic whose very
  purpose is to drop data, like `blackhole`, `limit_data` or `reset_peer`, is the exception).
- `on_eof()` runs when the source closed its side; it may be a generator that yields `Wait`s too.
- `deadline()`/`on_deadline()` give a timer that fires even when no data flows (timeout, reset_peer).
- `on_remove()` runs when the toxic is removed from a connection it applied to (Toxiproxy's cleanup).
- Randomness comes from `ctx.rng`, seeded per proxy, toxic and connection, so a seed replays it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypeVar

from k2.chaos.errors import InvalidFault

__all__ = [
    "Attribute",
    "Chunk",
    "Step",
    "Steps",
    "Stream",
    "Toxic",
    "ToxicContext",
    "Wait",
    "create_toxic",
    "register",
    "toxic_class",
    "toxic_types",
]


_LARGEST = 2**53  # every attribute is a JSON number; beyond this a float cannot hold it exactly


class Stream(StrEnum):
    """Direction of data: upstream = client -> server, downstream = server -> client (Toxiproxy's terms)."""

    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"

    @classmethod
    def parse(cls, value: str | Stream) -> Stream:
        try:
            return cls(value.lower() if isinstance(value, str) else value)  # Toxiproxy: any case
        except ValueError:
            raise InvalidFault(
                f"stream {value!r} is invalid; use 'upstream' (client -> server) or 'downstream' (server -> client)"
            ) from None


@dataclass(slots=True)
class Chunk:
    """Bytes read from one side, with the monotonic time they were read (so delays do not add up)."""

    data: bytes
    ts: float


@dataclass(frozen=True, slots=True)
class Wait:
    """Yielded by a toxic to pause until monotonic time `until` (`math.inf`: until interrupted)."""

    until: float


#: What `pipe()` yields: chunks to pass on, and waits (whose yield evaluates to True, or False if interrupted).
Step = Chunk | Wait
Steps = Generator[Step, bool | None, None]


class ToxicContext(Protocol):
    """One toxic on one direction of one connection: its state, its seeded RNG and its hooks."""

    state: Any
    rng: random.Random
    started: float
    label: str

    def close_link(self) -> None:
        """Close both sides of the connection with a FIN, after data already sent."""
        ...

    def reset_link(self) -> None:
        """Abort both sides of the connection with a TCP RST."""
        ...


@dataclass(frozen=True)
class Attribute:
    """One toxic attribute: JSON name, Python type, default, bounds, and accepted aliases."""

    name: str
    kind: type
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    help: str = ""

    def coerce(self, toxic_type: str, value: Any) -> Any:
        where = f"attribute {self.name!r} of toxic {toxic_type!r}"
        if self.kind is str:
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise InvalidFault(f"{where} is {value!r}; use one of {list(self.choices)}")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidFault(f"{where} is {value!r}, not a number; pass a number ({self.help})")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidFault(f"{where} is {value!r}; pass a finite number ({self.help})")
        if isinstance(value, int) and abs(value) > _LARGEST:
            raise InvalidFault(f"{where} is too large; pass at most {_LARGEST} ({self.help})")
        if self.kind is int:
            if value != int(value):
                raise InvalidFault(f"{where} is {value!r}; it must be a whole number ({self.help})")
            value = int(value)
        else:
            value = float(value)
        if self.minimum is not None and value < self.minimum:
            raise InvalidFault(f"{where} is {value}; it must be >= {self.minimum} ({self.help})")
        if self.maximum is not None and value > self.maximum:
            raise InvalidFault(f"{where} is {value}; it must be <= {self.maximum} ({self.help})")
        return value


class Toxic:
    """Base class: the shared wrapper fields, attribute validation and the no-op behaviour."""

    type_name: ClassVar[str] = ""
    ATTRIBUTES: ClassVar[tuple[Attribute, ...]] = ()

    def __init__(
        self,
        *,
        name: str | None = None,
        stream: str | Stream = Stream.DOWNSTREAM,
        toxicity: float = 1.0,
        clients: list[str] | tuple[str, ...] | None = None,
        **attributes: Any,
    ) -> None:
        self.stream = Stream.parse(stream)
        self.name = name or f"{self.type_name}_{self.stream.value}"
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise InvalidFault(f"toxic name {name!r} is invalid; use a non-empty string without '/'")
        if isinstance(toxicity, bool) or not isinstance(toxicity, int | float) or not 0.0 <= toxicity <= 1.0:
            raise InvalidFault(
                f"toxicity {toxicity!r} of toxic {self.name!r} is outside [0, 1]; "
                "it is the probability that a connection is affected"
            )
        self.toxicity = float(toxicity)
        listed: object = clients  # checked as received: callers outside Python's types send anything
        if listed is not None and (isinstance(listed, str) or not all(isinstance(c, str) and c for c in clients or ())):
            raise InvalidFault(
                f"clients {clients!r} of toxic {self.name!r} must be a list of client labels; "
                "get labels from proxy.client_listener(label)"
            )
        self.clients: tuple[str, ...] | None = tuple(clients) if clients is not None else None
        self.attributes: dict[str, Any] = self._validate_attributes(attributes)
        self.validate()

    def _validate_attributes(self, given: Mapping[str, Any]) -> dict[str, Any]:
        by_name = {a.name: a for a in self.ATTRIBUTES}
        by_name.update({alias: a for a in self.ATTRIBUTES for alias in a.aliases})
        values: dict[str, Any] = {}
        for key, value in given.items():
            spec = by_name.get(key)
            if spec is None:
                known = ", ".join(a.name for a in self.ATTRIBUTES) or "none"
                raise InvalidFault(f"toxic {self.type_name!r} has no attribute {key!r}; its attributes are: {known}")
            if spec.name in values:
                raise InvalidFault(f"attribute {spec.name!r} of toxic {self.type_name!r} was given twice")
            values[spec.name] = spec.coerce(self.type_name, value)
        for spec in self.ATTRIBUTES:
            if spec.name not in values:
                if spec.default is None:
                    raise InvalidFault(f"toxic {self.type_name!r} needs attribute {spec.name!r} ({spec.help}); pass it")
                values[spec.name] = spec.default
        return values

    def validate(self) -> None:
        """Cross-attribute checks; raise InvalidFault. Runs at construction, before anything is touched."""

    def applies_to(self, label: str) -> bool:
        """Whether connections from client `label` are subject to this toxic at all."""
        return self.clients is None or label in self.clients

    def replace(self, *, toxicity: float | None = None, attributes: Mapping[str, Any] | None = None) -> Toxic:
        """A new toxic with the same name and stream and some fields changed (the update operation)."""
        merged = dict(self.attributes)
        merged.update(attributes or {})
        return type(self)(
            name=self.name,
            stream=self.stream,
            toxicity=self.toxicity if toxicity is None else toxicity,
            clients=self.clients,
            **merged,
        )

    # --- behaviour; the defaults are a no-op toxic -------------------------------------------------

    def new_state(self, ctx: ToxicContext) -> Any:
        """Per-connection state, created when the toxic starts on a connection."""
        return None

    def pipe(self, chunk: Chunk, ctx: ToxicContext) -> Iterable[Step]:
        yield chunk

    def on_eof(self, ctx: ToxicContext) -> Iterable[Wait] | None:
        """The source closed its side; a generator yielding `Wait`s delays the close."""
        return None

    def deadline(self, ctx: ToxicContext) -> float | None:
        """Monotonic time at which `on_deadline` must run even if no data flows, or None."""
        return None

    def on_deadline(self, ctx: ToxicContext) -> None:
        """Runs once when `deadline()` has passed."""

    def on_remove(self, ctx: ToxicContext) -> None:
        """Runs when the toxic is removed (not replaced by an update) while it applies to a connection."""

    def to_json(self) -> dict[str, Any]:
        """Toxiproxy's JSON shape (plus `clients` when the toxic is restricted to some clients)."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type_name,
            "stream": self.stream.value,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }
        if self.clients is not None:
            out["clients"] = list(self.clients)
        return out

    def __repr__(self) -> str:
        attrs = ", ".join(f"{k}={v!r}" for k, v in self.attributes.items())
        return f"<{type(self).__name__} {self.name} {self.stream.value} toxicity={self.toxicity} {attrs}>"


_REGISTRY: dict[str, type[Toxic]] = {}
T = TypeVar("T", bound=type[Toxic])


def register(cls: T) -> T:
    """Class decorator: make a toxic available by its `type_name` (the proxy knows none by name)."""
    if not cls.type_name:
        raise TypeError(f"{cls.__name__} must set type_name before it is registered")
    _REGISTRY[cls.type_name] = cls
    return cls


def _load_builtins() -> None:
    from k2.chaos.proxy import toxics  # noqa: F401  (importing registers them)


def toxic_types() -> dict[str, type[Toxic]]:
    """Every registered toxic type, by name."""
    _load_builtins()
    return dict(sorted(_REGISTRY.items()))


def toxic_class(type_name: str) -> type[Toxic]:
    _load_builtins()
    try:
        return _REGISTRY[type_name]
    except KeyError:
        raise InvalidFault(
            f"toxic type {type_name!r} is unknown; known types: {', '.join(sorted(_REGISTRY))}"
        ) from None


def create_toxic(type_name: str, **fields: Any) -> Toxic:
    """Build and validate a toxic from its type name and fields (name, stream, toxicity, attributes...)."""
    return toxic_class(type_name)(**fields)
