"""Units: the parsers refuse anything ambiguous, with the parameter's name in the message."""

from __future__ import annotations

import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k2.chaos.errors import InvalidFault
from k2.chaos.units import MAX_SIZE, format_size, parse_duration, parse_signal, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512m", 512 << 20),
        ("1g", 1 << 30),
        ("1G", 1 << 30),
        ("1.5g", 3 << 29),
        ("64MiB", 64 << 20),
        ("64mb", 64 << 20),
        (" 4096 ", 4096),
        ("2k", 2048),
        (123, 123),
    ],
)
def test_parse_size_accepts(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["abc", "0", "-5m", "", "5x", "1.5", "m", "10 gb extra", 0, -1, True, 1.5, None])
def test_parse_size_refuses(bad: object) -> None:
    with pytest.raises(InvalidFault, match="mem_limit"):
        parse_size(bad, what="mem_limit")


def test_parse_size_refuses_absurd() -> None:
    with pytest.raises(InvalidFault, match="maximum"):
        parse_size("2048p")
    with pytest.raises(InvalidFault, match="maximum"):
        parse_size(MAX_SIZE + 1)


def test_parse_size_minimum_names_it() -> None:
    with pytest.raises(InvalidFault, match="minimum of 1m"):
        parse_size("512k", minimum=1 << 20)


@given(st.integers(min_value=1, max_value=MAX_SIZE))
def test_format_size_round_trips(size: int) -> None:
    assert parse_size(format_size(size)) == size


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("250ms", 0.25), ("5s", 5.0), ("1m30s", 90.0), ("2h", 7200.0), ("1.5s", 1.5), ("3", 3.0), (2, 2.0), (0.5, 0.5)],
)
def test_parse_duration_accepts(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["-1s", "5 parsecs", "s", "1s2", -3, float("nan"), float("inf"), True, "30d"])
def test_parse_duration_refuses(bad: object) -> None:
    with pytest.raises(InvalidFault, match="duration_seconds"):
        parse_duration(bad, what="duration_seconds")


def test_parse_duration_zero_only_when_allowed() -> None:
    assert parse_duration(0) == 0
    with pytest.raises(InvalidFault, match="longer than zero"):
        parse_duration("0s", allow_zero=False)


@pytest.mark.parametrize("value", ["SIGTERM", "term", "sigterm", 15, "15", signal.SIGTERM])
def test_parse_signal_accepts(value: object) -> None:
    assert parse_signal(value) is signal.SIGTERM


@pytest.mark.parametrize("bad", ["SIGFOO", "nonsense", 999, True, None, ""])
def test_parse_signal_refuses(bad: object) -> None:
    with pytest.raises(InvalidFault, match="stop_signal"):
        parse_signal(bad, what="stop_signal")
