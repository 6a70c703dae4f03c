"""Parse the human units fault parameters come in: sizes ("512m"), durations ("250ms"), signals.

Every parser raises `InvalidFault` naming the parameter and an accepted form, so a bad value is
refused when the fault is built, before anything is touched.
"""

from __future__ import annotations

import math
import re
import signal

from k2.chaos.errors import InvalidFault

__all__ = [
    "MAX_SIZE",
    "format_size",
    "parse_duration",
    "parse_signal",
    "parse_size",
]

# Binary multiples, as docker and the seed use them: "512m" is 512 MiB.
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE_RE = re.compile(r"^(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[kmgtp]?)(?:i?b)?$")
# Nothing K2 targets has a petabyte of memory or disk; a larger value is a typo.
MAX_SIZE = 1 << 50

_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h)")


def parse_size(value: object, *, what: str = "size", minimum: int = 1, maximum: int = MAX_SIZE) -> int:
    """Return a byte count from an int or a string like "512m", "1g", "1.5GiB", "4096".

    Bare numbers are bytes. Zero, negatives, fractions of a byte and values above `maximum`
    are refused rather than clamped, because a clamped limit silently tests something else.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidFault(f"{what}={value!r}: expected bytes as an int or a string like '512m' or '1g'")
    if isinstance(value, int):
        size = value
    else:
        text = value.strip().lower()
        if text.startswith("-"):
            raise InvalidFault(f"{what}={value!r} is negative: give a positive size such as '512m'")
        match = _SIZE_RE.match(text)
        if match is None:
            raise InvalidFault(
                f"{what}={value!r} is not a size: use a number with an optional unit k, m, g, t "
                "(binary multiples), e.g. '512m' or '1g'"
            )
        scaled = float(match["num"]) * _SIZE_UNITS[match["unit"]]
        if not scaled.is_integer():
            raise InvalidFault(f"{what}={value!r} is not a whole number of bytes: use a smaller unit")
        size = int(scaled)
    if size < minimum:
        raise InvalidFault(f"{what}={value!r} is below the minimum of {format_size(minimum)}: give a larger size")
    if size > maximum:
        raise InvalidFault(f"{what}={value!r} is above the maximum of {format_size(maximum)}: check the unit")
    return size


def format_size(size: int) -> str:
    """Render bytes in the largest exact binary unit ("512m"), for messages and reports."""
    for unit in ("p", "t", "g", "m", "k"):
        factor = _SIZE_UNITS[unit]
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def parse_duration(
    value: object, *, what: str = "duration", allow_zero: bool = True, maximum: float = 7 * 86400.0
) -> float:
    """Return seconds from a number (seconds) or a string like "250ms", "5s", "1m30s", "2h".

    Negative, NaN and infinite values are refused; a duration above `maximum` (a week by default)
    is treated as a unit mistake.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidFault(f"{what}={value!r}: expected seconds as a number or a string like '250ms' or '5s'")
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text.startswith("-"):
            raise InvalidFault(f"{what}={value!r} is negative: give a duration such as '5s'")
        try:
            seconds = float(text)
        except ValueError:
            seconds = _parse_compound_duration(text, value, what)
    else:
        seconds = float(value)
    if math.isnan(seconds) or math.isinf(seconds):
        raise InvalidFault(f"{what}={value!r} is not finite: give a duration such as '5s'")
    if seconds < 0:
        raise InvalidFault(f"{what}={value!r} is negative: give a duration such as '5s'")
    if seconds == 0 and not allow_zero:
        raise InvalidFault(f"{what}={value!r} must be longer than zero")
    if seconds > maximum:
        raise InvalidFault(f"{what}={value!r} is longer than {maximum:g} s: check the unit")
    return seconds


def _parse_compound_duration(text: str, original: str, what: str) -> float:
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match[1]) * _DURATION_UNITS[match[2]]
        pos = match.end()
    if pos != len(text) or not text:
        raise InvalidFault(
            f"{what}={original!r} is not a duration: use seconds or units us, ms, s, m, h, e.g. '250ms', '1m30s'"
        )
    return total


def parse_signal(value: object, *, what: str = "signal") -> signal.Signals:
    """Return a signal from "SIGTERM", "term", 15 or a `signal.Signals` member."""
    if isinstance(value, signal.Signals):
        return value
    if isinstance(value, bool):
        raise InvalidFault(f"{what}={value!r}: expected a signal name such as 'SIGTERM' or a number")
    if isinstance(value, int):
        try:
            return signal.Signals(value)
        except ValueError:
            raise InvalidFault(f"{what}={value!r} is not a signal number on this system") from None
    if isinstance(value, str):
        name = value.strip().upper()
        if name.isdigit():
            return parse_signal(int(name), what=what)
        if not name.startswith("SIG"):
            name = "SIG" + name
        try:
            return signal.Signals[name]
        except KeyError:
            raise InvalidFault(
                f"{what}={value!r} is not a known signal: use a name such as 'SIGTERM' or 'SIGINT'"
            ) from None
    raise InvalidFault(f"{what}={value!r}: expected a signal name such as 'SIGTERM' or a number")
