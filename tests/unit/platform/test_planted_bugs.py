"""Planted bugs stay off unless the constructor, the environment and a test or explore context all agree."""

from __future__ import annotations

import subprocess
import sys

import pytest

from k2.platform import planted
from k2.platform.config import PlatformConfig
from k2.platform.planted import BUGS, PlantedBugRefused, arm
from k2.platform.query import QueryEngine

CONFIG = PlatformConfig("127.0.0.1:1", "http://127.0.0.1:1", "http://127.0.0.1:1", "k", "s", "b", "postgresql://x@h/d")


def test_nothing_asked_nothing_armed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(planted.ENV, ",".join(BUGS))
    assert arm(None, "writer") is None


def test_armed_only_when_all_three_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "query-without-timeout"
    with pytest.raises(PlantedBugRefused, match="K2_PLANTED_BUGS does not list it"):
        arm(name, "query")
    monkeypatch.setenv(planted.ENV, "writer-commits-before-iceberg, query-without-timeout")
    assert arm(name, "query") == name  # pytest sets PYTEST_CURRENT_TEST
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    with pytest.raises(PlantedBugRefused, match="outside a test or an explore run"):
        arm(name, "query")
    monkeypatch.setenv(planted.CONTEXT_ENV, "run-1")
    assert arm(name, "query") == name


def test_wrong_component_or_unknown_name_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(planted.ENV, ",".join(BUGS))
    with pytest.raises(PlantedBugRefused, match="belongs to the writer, not the query"):
        arm("writer-commits-before-iceberg", "query")
    with pytest.raises(PlantedBugRefused, match="no planted bug 'all'"):
        arm("all", "query")


def test_components_refuse_before_touching_anything() -> None:
    with pytest.raises(PlantedBugRefused, match="does not list it"):
        QueryEngine(CONFIG, planted_bug="query-without-timeout")
    from k2.platform.producer import MarketDataProducer
    from k2.platform.writer import IcebergWriter

    with pytest.raises(PlantedBugRefused):
        MarketDataProducer(CONFIG, planted_bug="producer-retries-without-idempotence")
    with pytest.raises(PlantedBugRefused):
        IcebergWriter(CONFIG, planted_bug="writer-commits-before-iceberg")


def test_the_writer_process_refuses_with_a_message_and_status_2() -> None:
    env = {"PATH": "/usr/bin:/bin", **CONFIG.as_env(), planted.ENV: "writer-commits-before-iceberg"}
    done = subprocess.run(
        [sys.executable, "-m", "k2.platform.writer", "--planted-bug", "writer-commits-before-iceberg"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "refused outside a test or an explore run" in done.stderr and "Traceback" not in done.stderr
