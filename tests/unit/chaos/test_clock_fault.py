"""clock_skew's parameters are checked when it is built, before anything is touched."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import pytest

from k2.chaos.errors import InvalidFault
from k2.chaos.faults import clock_skew


@pytest.mark.parametrize(
    ("offset", "jump_to", "message"),
    [
        (None, None, "exactly one"),
        (60, "2026-10-25T00:59:50+00:00", "exactly one"),
        (True, None, "number of seconds"),
        ("60", None, "number of seconds"),
        (math.nan, None, "20 years"),
        (math.inf, None, "20 years"),
        (21 * 365 * 86400, None, "20 years"),
        (None, "2026-10-25T00:59:50", "time zone"),
        (None, "yesterday", "ISO-8601"),
        (None, datetime(2099, 1, 1, tzinfo=UTC), "20 years"),
    ],
)
def test_bad_parameters_are_refused_when_built(offset: object, jump_to: object, message: str) -> None:
    with pytest.raises(InvalidFault, match=message):
        clock_skew("postgres", offset, jump_to)  # type: ignore[arg-type]


def test_jump_to_becomes_the_offset_at_injection_time() -> None:
    moment = datetime.now(UTC) + timedelta(hours=2)
    fault = clock_skew("writer", jump_to=moment.isoformat())
    assert fault.spec.arguments()["offset_seconds"] == pytest.approx(moment.timestamp() - time.time(), abs=0.5)
    assert clock_skew("writer", offset_seconds=-90).spec.arguments() == {"offset_seconds": -90.0}
