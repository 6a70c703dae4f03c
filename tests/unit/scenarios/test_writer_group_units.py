"""The writer group without services: its file (private, restartable from), names, and refusals."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from k2.platform.config import PlatformConfig
from k2.scenarios.writer_group import GROUP_FILE, GroupError, WriterGroup, main

CONFIG = PlatformConfig("127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3", "key", "secret-key", "bucket",
                        "postgresql://u:password@127.0.0.1:4/db")  # fmt: skip


def test_the_group_file_is_private_and_holds_what_a_restart_needs(tmp_path: Path) -> None:
    group = WriterGroup(CONFIG, "writers-1", root=tmp_path / "g", session_timeout_ms=3000,
                        consumer_conf={"topic.metadata.refresh.interval.ms": 1000})  # fmt: skip
    assert stat.S_IMODE((tmp_path / "g").stat().st_mode) == 0o700
    assert stat.S_IMODE(group.path.stat().st_mode) == 0o600  # it holds the stack's credentials
    doc = json.loads(group.path.read_text())
    assert doc["env"]["K2_S3_SECRET_ACCESS_KEY"] == "secret-key" and doc["services"] == {}
    argv = doc["writer_argv"]
    assert argv[:2] == ["--group", "writers-1"]
    conf = [argv[i + 1] for i, a in enumerate(argv) if a == "--consumer-conf"]
    assert conf == ["client.id=writer", "session.timeout.ms=3000", "heartbeat.interval.ms=500",
                    "topic.metadata.refresh.interval.ms=1000"]  # fmt: skip
    assert group.members() == [] and group.targets() == {}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"group_id": "a b"}, "letters"),
        ({"group_id": "ｇ1"}, "ASCII"),
        ({"batch_rows": 0}, "at least 1 row"),
        ({"session_timeout_ms": 10}, "1000 ms"),
    ],
)
def test_bad_options_are_refused_naming_them(tmp_path: Path, options: dict[str, object], message: str) -> None:
    args = {"group_id": "g", **options}
    with pytest.raises(GroupError, match=message):
        WriterGroup(CONFIG, root=tmp_path, **args)  # type: ignore[arg-type]


def test_an_unknown_member_is_named_with_the_members_there_are(tmp_path: Path) -> None:
    group = WriterGroup(CONFIG, "g", root=tmp_path)
    with pytest.raises(GroupError, match="no member 'writer-9' \\(members: none yet\\)"):
        group.kill("writer-9")


def test_restart_command_refuses_an_unknown_member_or_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    WriterGroup(CONFIG, "g", root=tmp_path)
    assert main(["restart", "--group-file", str(tmp_path / GROUP_FILE), "writer-3"]) == 1
    assert "no member 'writer-3'" in capsys.readouterr().err
    (tmp_path / "other.json").write_text("{}")
    assert main(["restart", "--group-file", str(tmp_path / "other.json"), "writer-1"]) == 1


def test_member_command_needs_its_owner_as_pid_and_start_time() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["member", "--owner", "12", "--", "--group", "g"])
    assert exited.value.code == 2


def test_a_symlinked_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(GroupError, match="symlink"):
        WriterGroup(CONFIG, "g", root=tmp_path / "link")
    assert not (tmp_path / "real" / GROUP_FILE).exists()


def test_the_group_file_is_never_read_through_a_symlink(tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere.json"
    secret.write_text(json.dumps({"services": {"writer-1": {"pid": 1, "starttime": 1, "log": "x"}}}))
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / GROUP_FILE).symlink_to(secret)
    with pytest.raises(OSError):
        WriterGroup(CONFIG, "g", root=tmp_path / "g")
