"""Data dirs and the files K2 writes in them, as root on a shared machine: nothing follows a link
another user made, only the caller's private dirs are used, only K2 stack dirs are purged, and the
postgres user gets traverse rights and nothing more. No services run here."""

from __future__ import annotations

import os
import pwd
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from k2.cli import main
from k2.stack import datadir, safefs
from k2.stack.errors import ConfigError
from k2.stack.services import postgres

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (what it guards is root being tricked)")


@pytest.fixture
def nobody() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody")


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Path]:
    """A file a symlink attack would aim at; it must come out untouched."""
    target = tmp_path / "victim"
    target.write_text("precious\n")
    target.chmod(0o644)
    yield target
    assert target.read_text() == "precious\n" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert target.stat().st_uid == os.geteuid()


def test_purge_deletes_only_a_k2_stack_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "photos"
    other.mkdir(mode=0o700)
    (other / "keep.jpg").write_text("x")
    assert main(["stack", "down", "--purge", "--data-dir", str(other)]) == 2
    assert (other / "keep.jpg").exists() and "holds no K2 stack" in capsys.readouterr().err
    stack_dir = datadir.ensure_usable(tmp_path / "stack")
    assert main(["stack", "down", "--purge", "--data-dir", str(stack_dir)]) == 0
    assert not stack_dir.exists()


@root_only
def test_data_dirs_of_other_users_or_open_to_them_are_refused(tmp_path: Path, nobody: pwd.struct_passwd) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(ConfigError, match="owned by uid"):
        datadir.ensure_usable(theirs)
    with pytest.raises(ConfigError, match="owned by uid"):
        datadir.purge(theirs)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match="chmod go-w"):
        datadir.ensure_usable(shared)
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    link = tmp_path / "link"  # as if another user had planted it (e.g. in /tmp)
    link.symlink_to(mine)
    os.lchown(link, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(ConfigError, match="symlink owned by uid"):
        datadir.ensure_usable(link)


@root_only
def test_files_in_a_dir_k2pg_owns_are_never_followed(tmp_path: Path, nobody: pwd.struct_passwd, victim: Path) -> None:
    """pg_hba.conf (appended), and the directories prepare chowns, are opened without following links."""
    data = tmp_path / "pgdata"
    data.mkdir()
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    (data / "pg_hba.conf").symlink_to(victim)
    with pytest.raises(ConfigError, match="symlink"):
        postgres.allow_container_clients(data, nobody.pw_uid)
    (data / "pg_hba.conf").unlink()
    os.link(victim, data / "pg_hba.conf")  # a hard link to a file of ours: refused too
    with pytest.raises(ConfigError, match="hard links|owned by uid"):
        postgres.allow_container_clients(data, nobody.pw_uid)
    (data / "pg_hba.conf").unlink()
    (data / "pg_hba.conf").write_text("local all all scram-sha-256\n")
    os.chown(data / "pg_hba.conf", nobody.pw_uid, nobody.pw_gid)
    postgres.allow_container_clients(data, nobody.pw_uid)
    assert postgres.HBA_SAMENET in (data / "pg_hba.conf").read_text().splitlines()
    (tmp_path / "pgdata-link").symlink_to(data)
    with pytest.raises(ConfigError, match="symlink"), safefs.open_dir(tmp_path / "pgdata-link"):
        pass


@root_only
def test_lock_marker_and_write_probe_do_not_follow_links(tmp_path: Path, victim: Path) -> None:
    stack_dir = datadir.ensure_usable(tmp_path / "stack")
    for name in (".lock", datadir.MARKER):
        (stack_dir / name).unlink(missing_ok=True)
        (stack_dir / name).symlink_to(victim)
    with pytest.raises(ConfigError, match="symlink"), datadir.locked(stack_dir):
        pass
    with pytest.raises(ConfigError, match="symlink"):
        datadir.ensure_usable(stack_dir)
    assert not list(stack_dir.glob(".k2-write-probe*"))


@root_only
def test_a_mktemp_dir_works_for_k2pg_without_loosening_its_mode(tmp_path: Path) -> None:
    """`mktemp -d` makes 0700 root dirs: k2pg gets a traverse-only ACL entry; the mode bits stay."""
    made = Path(subprocess.run(["mktemp", "-d"], capture_output=True, text=True, check=True).stdout.strip())
    try:
        user = postgres.ensure_service_user()
        assert user is not None
        entry = pwd.getpwnam(user)
        stack_dir = datadir.ensure_usable(made / "stack")
        assert safefs.traversable(stack_dir, entry.pw_uid, entry.pw_gid) is not None  # before: blocked
        safefs.grant_traverse(stack_dir, entry.pw_uid, entry.pw_gid, user)
        assert stat.S_IMODE(made.stat().st_mode) & 0o707 == 0o700  # owner and other bits unchanged
        assert stat.S_IMODE(made.stat().st_mode) & 0o070 in (0o000, 0o010)  # the group class shows the mask: x at most
        probe = subprocess.run(["ls", str(stack_dir / "logs")], user=user, capture_output=True, check=False)
        assert probe.returncode != 0  # may traverse, may not list or read
        reach = subprocess.run(["test", "-x", str(stack_dir)], user=user, check=False)
        assert reach.returncode == 0
    finally:
        subprocess.run(["rm", "-rf", str(made)], check=True)


@root_only
def test_only_sockets_of_the_owner_are_removed_and_links_never_followed(
    tmp_path: Path, nobody: pwd.struct_passwd
) -> None:
    """What SeaweedFS leaves in /tmp is removed after its stop; nothing else that bears one of its names."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)

    def bound(path: Path) -> None:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(path))

    bound(shared / "ours.sock")
    bound(tmp_path / "elsewhere.sock")
    (shared / "link.sock").symlink_to(tmp_path / "elsewhere.sock")
    (shared / "file.sock").write_text("not a socket")
    bound(shared / "theirs.sock")
    os.chown(shared / "theirs.sock", nobody.pw_uid, nobody.pw_gid)
    names = ["ours.sock", "link.sock", "file.sock", "theirs.sock", "missing.sock"]

    assert safefs.remove_sockets(shared, names, os.geteuid()) == ["ours.sock"]
    assert sorted(p.name for p in shared.iterdir()) == ["file.sock", "link.sock", "theirs.sock"]
    assert stat.S_ISSOCK((tmp_path / "elsewhere.sock").lstat().st_mode)
