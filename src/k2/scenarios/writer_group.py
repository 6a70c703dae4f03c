"""The Iceberg writer as a group of processes: N members of one consumer group, each a process K2 started.

    group = WriterGroup(config, "writers-1", root=tmp_dir)
    group.start(2)                        # writer-1, writer-2: one consumer group, partitions split
    group.kill("writer-1")                # SIGKILL (pid + start time checked), verified gone
    group.restart("writer-1")             # a new process under the same name
    group.declare(session)                # every member a chaos target: pause, kill, limit through faults
    group.members()                       # [Member(name, pid, starttime, alive, log)]
    group.close()                         # SIGTERM each (graceful: flush, commit, leave), then SIGKILL

Everything about the group lives in one file, `group.json` (mode 0600, in a 0700 directory): the writer
command, its environment (the stack's credentials) and each member's pid and kernel start time. So another
process can restart a member exactly as this one would: a chaos fault's inverse runs
`python -m k2.scenarios.writer_group restart --group-file FILE NAME` (also after the runner died, from the
watchdog), and the fault then reads the member's new pid from that file.

Members never outlive whoever started them: each watches its owner (the process that launched it, by pid
and start time) and stops gracefully once the owner is gone, so a SIGKILLed runner leaves no writer behind.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2.chaos.targets.process import ProcessSpec, ProcessTarget, is_alive, proc_stat, send_signal
from k2.stack import procs

if TYPE_CHECKING:
    from k2.chaos.session import ChaosSession
    from k2.platform.config import PlatformConfig

__all__ = ["GroupError", "Member", "WriterGroup", "main"]

MODULE = "k2.scenarios.writer_group"  # not __name__: that is "__main__" when run with -m
GROUP_FILE = "group.json"
READY_LINE = "iceberg-writer: consuming"  # the writer logs it once its consumer has subscribed
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class GroupError(Exception):
    """A writer group operation that cannot be done (unknown member, a member that died at start)."""


@dataclass(frozen=True)
class Member:
    """One writer process: its name in the group, pid and kernel start time, and its log (shared by the lives of
    one name: this life's lines start at `log_offset`)."""

    name: str
    pid: int
    starttime: int
    log: str
    log_offset: int = 0

    @property
    def alive(self) -> bool:
        return is_alive(self.pid, self.starttime)


class WriterGroup:
    """A consumer group of Iceberg writer processes; see the module docstring."""

    def __init__(
        self,
        config: PlatformConfig,
        group_id: str,
        *,
        root: str | Path | None = None,
        batch_rows: int = 2000,
        batch_seconds: float = 0.5,
        session_timeout_ms: int = 6000,
        consumer_conf: Mapping[str, Any] | None = None,
        writer_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`writer_args`: more options of `python -m k2.platform.writer`; `env`: more environment for the members
        (both recorded in the group file, so a member restarted by a fault's inverse gets them too)."""
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", group_id):
            raise GroupError(f"writer group id {group_id!r}: use ASCII letters, digits, '.', '_' and '-'")
        if batch_rows < 1 or batch_seconds <= 0 or session_timeout_ms < 1000:
            raise GroupError(
                f"writer group {group_id}: batch_rows={batch_rows}, batch_seconds={batch_seconds}, "
                f"session_timeout_ms={session_timeout_ms}: give at least 1 row, > 0 s and >= 1000 ms"
            )
        self.config = config
        self.group_id = group_id
        self.session: ChaosSession | None = None  # set by declare(): members started later are declared too
        self._declared: set[str] = set()
        # A fresh 0700 directory unless one is given: the file holds the stack's credentials.
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix=f"k2-{group_id}-"))
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.root.is_symlink() or self.root.stat().st_uid != os.getuid():
            raise GroupError(f"{self.root} is a symlink or another user's directory; give a directory of your own")
        self.root.chmod(0o700)
        self.path = self.root / GROUP_FILE
        # Heartbeats well inside the session timeout: members learn of a rebalance (measured: a join went from
        # ~7 s to ~2 s on Tansu with 500 ms instead of librdkafka's 3 s default).
        conf = {"client.id": "writer", "session.timeout.ms": session_timeout_ms,
                "heartbeat.interval.ms": max(100, session_timeout_ms // 6), **dict(consumer_conf or {})}  # fmt: skip
        argv = ["--group", group_id, "--batch-rows", str(batch_rows), "--batch-seconds", str(batch_seconds)]
        for key, value in conf.items():
            argv += ["--consumer-conf", f"{key}={value}"]
        argv += list(writer_args)
        with _locked(self.path) as doc:
            doc.update(group_id=group_id, writer_argv=argv, env={**config.as_env(), **dict(env or {})},
                       services=doc.get("services", {}))  # fmt: skip

    # ---- the members ---------------------------------------------------------------------------

    def start(self, count: int = 1, *, wait: bool = True) -> list[Member]:
        """Start `count` new members (writer-N with the next free numbers), all launched before any is awaited."""
        taken = {int(n.split("-")[-1]) for n in self._doc().get("services", {})}
        names = [f"writer-{i}" for i in range(1, len(taken) + count + 1) if i not in taken][:count]
        started = [_launch(self.path, name, _me()) for name in names]
        if wait:
            for member in started:
                _wait_ready(member, START_TIMEOUT)
        if self.session is not None:
            self.declare(self.session)
        return started

    def members(self) -> list[Member]:
        """Every member ever started in this group, alive or not, in start order."""
        return [_member(name, entry) for name, entry in self._doc().get("services", {}).items()]

    def alive(self) -> list[Member]:
        return [m for m in self.members() if m.alive]

    def member(self, name: str) -> Member:
        entry = self._doc().get("services", {}).get(name)
        if entry is None:
            known = ", ".join(self._doc().get("services", {})) or "none yet"
            raise GroupError(f"writer group {self.group_id} has no member {name!r} (members: {known})")
        return _member(name, entry)

    def kill(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        """SIGKILL one member (only if its pid still has its start time) and wait until it is gone."""
        member = self.member(name)
        started = time.monotonic()
        sent = send_signal(member.pid, member.starttime, signal.SIGKILL)
        if not _wait_gone(member, timeout):
            raise GroupError(f"{name} (pid {member.pid}) survived SIGKILL for {timeout:g}s; is it frozen (paused)?")
        return {
            "member": name,
            "pid": member.pid,
            "signalled": sent,
            "gone_after_s": round(time.monotonic() - started, 3),
        }

    def stop(self, name: str, timeout: float = STOP_TIMEOUT) -> str:
        """Graceful leave: SIGTERM (the writer flushes, commits and leaves the group), SIGKILL after `timeout`."""
        member = self.member(name)
        if not send_signal(member.pid, member.starttime, signal.SIGTERM):
            return "gone"
        if _wait_gone(member, timeout):
            return "stopped"
        send_signal(member.pid, member.starttime, signal.SIGKILL)
        _wait_gone(member, 10.0)
        return "killed"

    def restart(self, name: str, *, wait: bool = True) -> Member:
        """Start the member again under its name (a no-op returning it when it still runs)."""
        member = self.member(name)
        if member.alive:
            return member
        member = _launch(self.path, name, _me())
        if wait:
            _wait_ready(member, START_TIMEOUT)
        return member

    def close(self, timeout: float = STOP_TIMEOUT) -> dict[str, str]:
        """Stop every member at once (SIGTERM, then SIGKILL at the deadline); returns how each ended."""
        ended: dict[str, str] = {}
        members = self.alive()
        for member in members:
            send_signal(member.pid, member.starttime, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for member in members:
            if _wait_gone(member, max(0.0, deadline - time.monotonic())):
                ended[member.name] = "stopped"
                continue
            send_signal(member.pid, member.starttime, signal.SIGKILL)
            ended[member.name] = "killed" if _wait_gone(member, 10.0) else "survived SIGKILL (frozen?)"
        return ended

    # ---- as chaos targets ------------------------------------------------------------------------

    def targets(self, run_id: str = "") -> dict[str, ProcessTarget]:
        """A ProcessTarget per live member, restartable by the group's restart command (see the module doc)."""
        targets = {}
        restart = [sys.executable, "-m", MODULE, "restart", "--group-file", str(self.path)]
        for member in self.alive():
            spec = ProcessSpec.from_dict(
                {
                    "name": member.name,
                    "pid": member.pid,
                    "starttime": member.starttime,
                    "restart_argv": [*restart, member.name],
                    "state_file": str(self.path),
                    "service": member.name,
                    "run_id": run_id,
                    "stop_timeout": STOP_TIMEOUT,
                    "start_timeout": START_TIMEOUT,
                }
            )
            targets[member.name] = ProcessTarget(spec)
        return targets

    def declare(self, session: ChaosSession) -> list[str]:
        """Make every live member a service of `session` (by its name: lifecycle, freeze and limits through its
        process target), so faults may act on it; members started later are declared as they start."""
        from k2.chaos.session import ServiceTargets

        self.session = session
        declared = []
        for name, target in self.targets().items():
            known = session.services.get(name)
            if known is not None and all(_state_file(t) == str(self.path) for t in known.targets):
                continue  # already declared by this group (a fault may hold that very target)
            if known is not None and name not in self._declared:
                raise GroupError(f"{name} is already a service of the chaos session; give the group other names")
            session.services[name] = ServiceTargets(name, target)
            self._declared.add(name)
            declared.append(name)
        return declared

    def undeclare(self) -> None:
        """Take the group's members out of the session again (the session outlives the group)."""
        if self.session is not None:
            for name in self._declared:
                self.session.services.pop(name, None)
            self._declared.clear()
            self.session = None

    # ---- the group's progress in Kafka -------------------------------------------------------------

    def committed(self, topic: str, partitions: list[int], timeout: float = 10.0) -> dict[int, int]:
        """The group's committed offset per partition of `topic` (-1: none yet), read from the broker."""
        from confluent_kafka import Consumer, TopicPartition

        reader = Consumer({**self.config.kafka_base(), "group.id": self.group_id, "client.id": "checker"})
        try:
            found = reader.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout)
        finally:
            reader.close()
        return {tp.partition: tp.offset for tp in found}

    def wait_caught_up(self, topic: str, ends: Mapping[int, int], timeout: float) -> float | None:
        """Seconds until the group has committed `ends` (next offset per partition), or None at the deadline."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            committed = self.committed(topic, sorted(ends))
            if all(committed.get(p, -1) >= end for p, end in ends.items()):
                return round(time.monotonic() - started, 3)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.25)

    def _doc(self) -> dict[str, Any]:
        return _read(self.path)


# ---- the group file and launching a member (shared by the class and the restart command) ---------------


def _me() -> procs.ProcessId:
    stat = proc_stat(os.getpid())
    assert stat is not None
    return procs.ProcessId(stat.pid, stat.starttime)


def _state_file(target: Any) -> str | None:
    spec = getattr(target, "spec", None)
    return getattr(spec, "state_file", None)


def _read(path: Path) -> dict[str, Any]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return {}
    with os.fdopen(fd) as handle:
        data = handle.read()
    return json.loads(data) if data.strip() else {}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[dict[str, Any]]:
    """Read-modify-write the group file under an exclusive lock; written atomically, mode 0600."""
    lock_fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        doc = _read(path)
        yield doc
        fd, tmp = tempfile.mkstemp(prefix=".group.", dir=path.parent)
        with os.fdopen(fd, "w") as out:
            json.dump(doc, out, indent=2, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        os.close(lock_fd)


def _member(name: str, entry: Mapping[str, Any]) -> Member:
    return Member(name, int(entry["pid"]), int(entry["starttime"]), str(entry["log"]), int(entry.get("log_offset", 0)))


def _launch(path: Path, name: str, owner: procs.ProcessId) -> Member:
    """Start member `name` detached, bound to `owner`; record its pid and start time in the group file."""
    with _locked(path) as doc:
        if "writer_argv" not in doc:
            raise GroupError(f"{path} is not a writer group file (no writer command in it)")
        log = path.parent / f"{name}.log"
        argv = [sys.executable, "-m", MODULE, "member", "--owner", f"{owner.pid}:{owner.starttime}", "--",
                *doc["writer_argv"]]  # fmt: skip
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONUNBUFFERED": "1", **doc["env"]}
        offset = log.stat().st_size if log.exists() else 0
        process = procs.launch(argv, env=env, cwd=path.parent, log=log)
        if process.starttime < 0:
            raise GroupError(f"{name} exited at once; its log {log} says why")
        entry = {"pid": process.pid, "starttime": process.starttime, "log": str(log), "log_offset": offset}
        doc.setdefault("services", {})[name] = entry
    return _member(name, entry)


def _wait_ready(member: Member, timeout: float) -> None:
    """Until the member says it consumes (its consumer subscribed); GroupError if it died or the deadline passed."""
    offset = int(_read(Path(member.log).parent / GROUP_FILE).get("services", {}).get(member.name, {})
                 .get("log_offset", 0))  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        with open(member.log, "rb") as handle:
            handle.seek(offset)
            if READY_LINE.encode() in handle.read():
                return
        if not member.alive:
            raise GroupError(f"{member.name} (pid {member.pid}) exited during start; see {member.log}")
        if time.monotonic() >= deadline:
            raise GroupError(f"{member.name} (pid {member.pid}) not consuming after {timeout:g}s; see {member.log}")
        time.sleep(0.05)


def _wait_gone(member: Member, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while member.alive:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


# ---- the two commands: a member process, and restarting one from another process ----------------------


def _watch_owner(owner: procs.ProcessId) -> None:
    """Stop this writer gracefully (SIGTERM to itself) once the process that started it is gone."""
    while procs.is_alive(owner):
        time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    member = sub.add_parser("member", help="run one writer that stops when its owner process is gone")
    member.add_argument("--owner", required=True, help="PID:STARTTIME of the process this writer belongs to")
    member.add_argument("writer_args", nargs=argparse.REMAINDER, help="-- then python -m k2.platform.writer options")
    restart = sub.add_parser("restart", help="start a member of a writer group again (a chaos fault's inverse)")
    restart.add_argument("--group-file", required=True, type=Path)
    restart.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "member":
        pid, _, start = args.owner.partition(":")
        if not (pid.isdigit() and start.isdigit()):
            parser.error(f"--owner takes PID:STARTTIME, got {args.owner!r}")
        threading.Thread(target=_watch_owner, args=(procs.ProcessId(int(pid), int(start)),), daemon=True).start()
        from k2.platform import writer

        return writer.main([a for a in args.writer_args if a != "--"])
    try:
        path = args.group_file
        entry = _read(path).get("services", {}).get(args.name)
        if entry is None:
            raise GroupError(f"{path} has no member {args.name!r}")
        if _member(args.name, entry).alive:
            print(f"{args.name} already runs (pid {entry['pid']})")
            return 0
        # Owned by whoever asked for the restart: the runner, or the watchdog that heals a dead runner's faults.
        parent = proc_stat(os.getppid())
        owner = procs.ProcessId(os.getppid(), parent.starttime if parent else 0)
        started = _launch(path, args.name, owner)  # restored once it runs again; it joins the group on its own
    except (GroupError, OSError, ValueError) as exc:
        print(f"writer group: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name} started (pid {started.pid})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
