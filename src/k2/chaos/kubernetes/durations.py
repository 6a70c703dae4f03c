"""Durations as Chaos Mesh reads them: Go's `time.ParseDuration`, and K2's seconds written so it accepts them.

Chaos Mesh's admission webhook parses every duration field with Go's `time.ParseDuration`; a string
it refuses is refused at `kubectl apply`. `parse_go_duration` follows that function's grammar and
overflow rules exactly (signed sequence of decimal numbers with a unit each, "0" alone needs none),
so K2 can check its own manifests, and those a user edits, before a cluster sees them.
"""

from __future__ import annotations

from k2.chaos.errors import InvalidFault

__all__ = ["format_go_duration", "parse_go_duration"]

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # U+00B5 micro sign
    "\u03bcs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_LIMIT = 1 << 63  # int64 overflow bound, as Go checks it on the unsigned accumulator


def parse_go_duration(text: str) -> int:
    """Nanoseconds of `text` as Go's `time.ParseDuration` reads it; `InvalidFault` where Go returns an error."""
    if not isinstance(text, str):
        raise InvalidFault(f"duration {text!r}: expected a string such as '30s' or '1m30s'")
    s, neg = text, False
    if s and s[0] in "+-":
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if not s:
        raise InvalidFault(f"invalid duration {text!r}: give a number with a unit, e.g. '30s', '500ms', '1h'")
    total = 0
    while s:
        if not (s[0] == "." or (s[0].isascii() and s[0].isdigit())):
            raise InvalidFault(f"invalid duration {text!r}: expected a number at {s!r}")
        before = len(s)
        value, s = _leading_int(s, text)
        had_int = len(s) != before
        fraction, scale, had_fraction = 0, 1.0, False
        if s.startswith("."):
            s = s[1:]
            before = len(s)
            fraction, scale, s = _leading_fraction(s)
            had_fraction = len(s) != before
        if not had_int and not had_fraction:
            raise InvalidFault(f"invalid duration {text!r}: a '.' needs digits on one side")
        i = 0
        while i < len(s) and s[i] != "." and not (s[i].isascii() and s[i].isdigit()):
            i += 1
        if i == 0:
            raise InvalidFault(f"missing unit in duration {text!r}: add one of ns, us, ms, s, m, h")
        unit_name, s = s[:i], s[i:]
        unit = _UNITS_NS.get(unit_name)
        if unit is None:
            raise InvalidFault(f"unknown unit {unit_name!r} in duration {text!r}: use ns, us, µs, ms, s, m or h")
        if value > _LIMIT // unit:
            raise InvalidFault(f"invalid duration {text!r}: it overflows Go's int64 nanoseconds (~292 years)")
        value *= unit
        if fraction > 0:
            value += int(float(fraction) * (float(unit) / scale))
            if value > _LIMIT:
                raise InvalidFault(f"invalid duration {text!r}: it overflows Go's int64 nanoseconds")
        total += value
        if total > _LIMIT:
            raise InvalidFault(f"invalid duration {text!r}: it overflows Go's int64 nanoseconds")
    if neg:
        return -total
    if total > _LIMIT - 1:
        raise InvalidFault(f"invalid duration {text!r}: it overflows Go's int64 nanoseconds")
    return total


def _leading_int(s: str, text: str) -> tuple[int, str]:
    x, i = 0, 0
    while i < len(s) and s[i].isascii() and s[i].isdigit():
        if x > _LIMIT // 10:
            raise InvalidFault(f"invalid duration {text!r}: a number overflows Go's int64")
        x = x * 10 + int(s[i])
        if x > _LIMIT:
            raise InvalidFault(f"invalid duration {text!r}: a number overflows Go's int64")
        i += 1
    return x, s[i:]


def _leading_fraction(s: str) -> tuple[int, float, str]:
    """Digits after the point; past int64 precision the rest are read and dropped, as Go does."""
    x, scale, i, overflow = 0, 1.0, 0, False
    while i < len(s) and s[i].isascii() and s[i].isdigit():
        if not overflow:
            if x > (_LIMIT - 1) // 10:
                overflow = True
            else:
                y = x * 10 + int(s[i])
                if y > _LIMIT:
                    overflow = True
                else:
                    x, scale = y, scale * 10
        i += 1
    return x, scale, s[i:]


def format_go_duration(seconds: float) -> str:
    """`seconds` as one number and one unit ("5s", "1500ms", "250us"), which both Go's parser and the
    CRDs' single-unit patterns (NetworkChaos delay) accept. Negative values keep their sign."""
    ns = round(seconds * 1_000_000_000)
    sign, ns = ("-" if ns < 0 else ""), abs(ns)
    if ns == 0:
        return "0s"
    for unit, size in (
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ):
        if ns % size == 0:
            return f"{sign}{ns // size}{unit}"
    return f"{sign}{ns}ns"
