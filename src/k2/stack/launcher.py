"""Second half of procs.launch: start one service process detached and print its pid."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def main() -> int:
    request = json.loads(sys.stdin.read())
    # 0600 and never through a link: logs can hold credentials and data (the logs dir is the caller's, 0700).
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    with open(os.open(request["log"], flags, 0o600), "ab", buffering=0) as log:
        os.fchmod(log.fileno(), 0o600)
        child = subprocess.Popen(
            request["argv"],
            env=request["env"],
            cwd=request["cwd"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=request["user"],
            group=_group_of(request["user"]),
            extra_groups=[] if request["user"] else None,
        )
    print(child.pid, flush=True)
    return 0


def _group_of(user: str | None) -> int | None:
    if user is None:
        return None
    import pwd

    return pwd.getpwnam(user).pw_gid


if __name__ == "__main__":
    raise SystemExit(main())
