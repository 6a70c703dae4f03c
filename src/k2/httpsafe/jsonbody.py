"""Parse a request's JSON body strictly: what `json.loads` lets through would crash a handler later.

Refused, each with a message for a 400: malformed JSON, nesting deeper than the parser can take
(RecursionError), NaN/Infinity and numbers that overflow a float (1e400), and lone UTF-16 surrogates
("\\ud800"), which no UTF-8 log line or file can hold.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["JsonError", "parse_json"]

MAX_DEPTH = 64


class JsonError(ValueError):
    """The body is not JSON this server accepts; the message says why."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonError(f"number {text} is too large for a float")
    return value


def _constant(name: str) -> Any:
    raise JsonError(f"{name} is not a JSON number")


def _check(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise JsonError(f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, list):
        for item in value:
            _check(item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check(item, depth + 1)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonError(f"string {text[:40]!r} holds a lone UTF-16 surrogate; send valid Unicode") from None


def parse_json(body: bytes | str) -> Any:
    """The JSON value in `body`, or JsonError."""
    try:
        value = json.loads(body, parse_float=_finite, parse_constant=_constant)
    except JsonError:
        raise
    except RecursionError:
        raise JsonError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonError(f"not valid JSON: {exc}") from None
    _check(value, 0)
    return value
