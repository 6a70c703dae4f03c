"""disk_fill validates before touching anything, and never fills the machine's own root filesystem."""

from __future__ import annotations

from pathlib import Path

import pytest

from k2.chaos.errors import InvalidFault, UnsafeTarget
from k2.chaos.faults import disk_fill
from k2.chaos.targets import target_from_description
from k2.chaos.targets.disk import DiskTarget


@pytest.mark.parametrize(
    ("options", "message"),
    [({"fullness": 0}, "fullness"), ({"fullness": 1.5}, "fullness"), ({"fullness": None}, "fullness"),
     ({"size": "lots"}, "size"), ({"size": "-5m"}, "size")],
)  # fmt: skip
def test_invalid_parameters_are_rejected_when_built(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidFault, match=message):
        disk_fill("kafka", **options)  # type: ignore[arg-type]


def test_the_root_filesystem_is_refused(tmp_path: Path) -> None:
    target = DiskTarget("kafka", str(tmp_path))
    if tmp_path.stat().st_dev != Path("/").stat().st_dev:
        pytest.skip("tmp_path is not on the root filesystem here")
    with pytest.raises(UnsafeTarget, match="root filesystem"):
        target.fill_disk(fullness=1.0)
    assert list(tmp_path.iterdir()) == []


def test_a_disk_target_is_rebuilt_from_its_description() -> None:
    target = DiskTarget("kafka", "/data", applied={"files": ["/data/.k2-chaos-fill-1"]})
    rebuilt = target_from_description(target.describe())
    assert isinstance(rebuilt, DiskTarget) and rebuilt.describe() == target.describe()
