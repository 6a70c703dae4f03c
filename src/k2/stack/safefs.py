"""File operations that root can do in a shared machine's directories without being tricked.

The rules: a data dir belongs to the caller and no one else can write to it; inside directories another
user can write (PostgreSQL's, owned by `k2pg`), every open is O_NOFOLLOW relative to an already-opened
directory, ownership changes go through the open descriptor, and an existing file must be a regular
file with one link owned by whom we expect. The service user is given only traverse rights (a POSIX
ACL entry `u:k2pg:--x`, written as the kernel's xattr so no `setfacl` is needed), never wider modes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

from k2.stack.errors import ConfigError

__all__ = ["check_owned_dir", "grant_traverse", "open_dir", "open_file_in", "remove_sockets", "traversable"]

_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_UNDEFINED = 0xFFFFFFFF
_EXEC = 0o1


def check_owned_dir(path: Path, what: str = "data dir") -> Path:
    """`path` resolved, after proving it is a directory the caller owns that no one else may write.

    A symlink is followed only when the caller made it; anything else is refused with the remedy.
    """
    me = os.geteuid()
    try:
        link = path.lstat()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist; create it or let `k2 stack up` create it") from None
    if stat.S_ISLNK(link.st_mode):
        if link.st_uid != me:
            raise ConfigError(
                f"{what} {path} is a symlink owned by uid {link.st_uid}, not by you (uid {me}); K2 does not "
                "follow links others made. Pass --data-dir with the real directory you own."
            )
        path = path.resolve()
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{what} {path} exists and is not a directory. Pass --data-dir with a directory path.")
    if info.st_uid != me:
        raise ConfigError(
            f"{what} {path} is owned by uid {info.st_uid}, not by you (uid {me}): K2 only uses a data dir its "
            "caller owns. Use a directory of your own (e.g. `mktemp -d`), or run as its owner."
        )
    if info.st_mode & 0o022:
        raise ConfigError(
            f"{what} {path} is writable by group or others (mode {stat.filemode(info.st_mode)}), so another user "
            f"could swap its files. Run `chmod go-w {path}` or choose another directory."
        )
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & 0o002 and not mode & stat.S_ISVTX:
            raise ConfigError(
                f"{what} {path} is inside {parent}, which anyone may write without the sticky bit, so another "
                f"user could replace it. Choose a data dir elsewhere, or `chmod o-w {parent}`."
            )
    return path


@contextlib.contextmanager
def open_dir(path: Path | str, *, dir_fd: int | None = None) -> Iterator[int]:
    """An O_NOFOLLOW descriptor of a directory (relative to `dir_fd` when given), closed on exit."""
    try:
        fd = os.open(path, _NOFOLLOW_DIR, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ConfigError(f"{path} is a symlink or not a directory; K2 does not follow it. Remove it.") from None
        raise
    try:
        yield fd
    finally:
        os.close(fd)


def open_file_in(dir_fd: int, name: str, flags: int, *, owner: int | None = None, mode: int = 0o600) -> int:
    """Open `name` in an opened directory, never through a symlink; an existing file must be a regular
    file with one link and (when given) owned by `owner`, else ConfigError."""
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"{name} is a symlink; K2 does not follow it as root. Remove it.") from None
        raise
    info = os.fstat(fd)
    wrong = None
    if not stat.S_ISREG(info.st_mode):
        wrong = "is not a regular file"
    elif info.st_nlink != 1:
        wrong = f"has {info.st_nlink} hard links"
    elif owner is not None and info.st_uid != owner:
        wrong = f"is owned by uid {info.st_uid}, not {owner}"
    if wrong:
        os.close(fd)
        raise ConfigError(f"{name} {wrong}; K2 will not write through it. Remove it and try again.")
    os.set_blocking(fd, True)
    return fd


def remove_sockets(directory: Path | str, names: list[str], owner: int) -> list[str]:
    """Unlink each of `names` in `directory` that is a socket owned by `owner`; the names removed.

    For what a service leaves in a shared directory (SeaweedFS's sockets in /tmp): anything else under
    such a name (a file, a symlink, another user's socket) is left alone. In a sticky directory only its
    owner or root can swap an entry, so the checked entry is the one unlinked; unlink never follows a link.
    """
    removed = []
    with open_dir(directory) as dir_fd:
        for name in names:
            try:
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if stat.S_ISSOCK(info.st_mode) and info.st_uid == owner:
                    os.unlink(name, dir_fd=dir_fd)
                    removed.append(name)
            except FileNotFoundError:
                continue
    return removed


def _can_traverse(info: os.stat_result, uid: int, gid: int) -> bool:
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def _acl_entries(fd: int, mode: int) -> list[tuple[int, int, int]]:
    try:
        raw = os.getxattr(fd, _ACL_XATTR)
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, errno.EOPNOTSUPP):
            raise
        raw = b""
    if len(raw) >= 4 and (len(raw) - 4) % 8 == 0 and struct.unpack_from("<I", raw)[0] == _ACL_VERSION:
        return [struct.unpack_from("<HHI", raw, offset) for offset in range(4, len(raw), 8)]
    return [(_USER_OBJ, (mode >> 6) & 7, _UNDEFINED), (_GROUP_OBJ, (mode >> 3) & 7, _UNDEFINED),
            (_OTHER, mode & 7, _UNDEFINED)]  # fmt: skip


def _add_traverse_acl(fd: int, uid: int) -> None:
    """Add `u:uid:--x` to a directory's access ACL; the mask becomes at most what it must, so no one
    else gains anything (the group's effective rights are its own entry AND the mask)."""
    entries = [e for e in _acl_entries(fd, os.fstat(fd).st_mode) if e[0] != _MASK]
    named = [e for e in entries if e[0] == _USER and e[2] == uid]
    if named and named[0][1] & _EXEC:
        return
    entries = [e for e in entries if not (e[0] == _USER and e[2] == uid)]
    entries.append((_USER, (named[0][1] if named else 0) | _EXEC, uid))
    mask = 0
    for tag, perm, _ in entries:
        if tag in (_USER, _GROUP, _GROUP_OBJ):
            mask |= perm
    entries.append((_MASK, mask, _UNDEFINED))
    entries.sort(key=lambda e: (e[0], e[2]))
    os.setxattr(fd, _ACL_XATTR, struct.pack("<I", _ACL_VERSION) + b"".join(struct.pack("<HHI", *e) for e in entries))


def traversable(path: Path, uid: int, gid: int) -> Path | None:
    """The first folder (from `path` up) whose mode bits stop uid/gid from entering, or None."""
    for folder in [path, *path.parents]:
        if not _can_traverse(folder.stat(), uid, gid):
            return folder
    return None


def grant_traverse(path: Path, uid: int, gid: int, user: str) -> None:
    """Let `user` pass through every folder from `path` up to / (traverse only, no listing, no reading).

    Folders the caller owns get an ACL entry; a folder someone else owns that `user` cannot enter is
    refused with the remedy. Modes are never changed.
    """
    me = os.geteuid()
    for folder in [path, *path.parents]:
        with open_dir(folder) as fd:
            info = os.fstat(fd)
            if _can_traverse(info, uid, gid):
                continue
            if info.st_uid != me:
                raise ConfigError(
                    f"postgres runs as the unprivileged user {user!r}, which cannot enter {folder} (mode "
                    f"{stat.filemode(info.st_mode)}, owned by uid {info.st_uid}). Choose a data dir that {user} "
                    "can reach (e.g. under /tmp or /var/lib/k2), or run k2 as a non-root user."
                )
            try:
                _add_traverse_acl(fd, uid)
            except OSError as exc:
                raise ConfigError(
                    f"postgres runs as {user!r}, which cannot enter {folder}, and K2 could not give it traverse "
                    f"rights there ({exc.strerror}: the filesystem may lack POSIX ACLs). Choose a data dir "
                    f"{user} can reach (e.g. under /tmp or /var/lib/k2)."
                ) from None
