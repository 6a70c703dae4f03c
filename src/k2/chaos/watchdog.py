"""A dead-man switch: a process that outlives the runner and restores its faults if it dies.

The runner starts it (`Watchdog.start`) before injecting anything. It runs in its own session, so
SIGKILL of the runner and the Ctrl-C sent to the runner's process group do not reach it. It waits
on a pidfd of the runner (pid + start time checked, so a reused pid is not mistaken for the
runner); when the runner dies it takes the journal lock the runner held (freed by the kernel at
death), runs `Journal.recover()`, logs what it did next to the journal, and exits. A runner that
ends normally tells it to exit through a pipe.

Usage (runner side)::

    with Watchdog.start(journal_path):
        ...  # inject and restore faults through a Journal on journal_path
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

from k2.chaos.errors import ChaosError
from k2.chaos.journal import Journal
from k2.chaos.procfs import is_alive, proc_stat

__all__ = ["Watchdog", "default_log_path", "main"]

log = logging.getLogger("k2.chaos.watchdog")

_EXIT = b"exit\n"


def default_log_path(journal: str | os.PathLike[str]) -> Path:
    """The watchdog's log lives next to the journal it guards."""
    journal = Path(journal)
    return journal.with_name(journal.name + ".watchdog.log")


class Watchdog:
    """The runner's handle on its watchdog process."""

    def __init__(self, proc: subprocess.Popen[bytes], control_fd: int, log_path: Path) -> None:
        self.proc, self._control_fd, self.log_path = proc, control_fd, log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    def start(
        cls,
        journal: str | os.PathLike[str],
        *,
        log_path: str | os.PathLike[str] | None = None,
        poll_interval: float = 0.2,
        ready_timeout: float = 15.0,
        preload: tuple[str, ...] = (),
    ) -> Watchdog:
        """Start a watchdog for this process and wait until it watches (so no fault is unguarded)."""
        journal = Path(journal).resolve()
        log_file = Path(log_path) if log_path else default_log_path(journal)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        me = proc_stat(os.getpid())
        assert me is not None
        read_fd, write_fd = os.pipe()  # both non-inheritable: only the watchdog gets read_fd
        cmd = [sys.executable, "-m", "k2.chaos.watchdog", "--journal", str(journal), "--log", str(log_file)]
        cmd += ["--runner-pid", str(os.getpid()), "--runner-starttime", str(me.starttime)]
        cmd += ["--control-fd", str(read_fd), "--poll-interval", str(poll_interval)]
        cmd += [f"--preload={kind}" for kind in preload]
        with open(log_file, "ab") as stderr:
            proc = subprocess.Popen(
                cmd,
                pass_fds=(read_fd,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,  # out of the runner's process group: Ctrl-C does not reach it
            )
        os.close(read_fd)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], ready_timeout)
        line = proc.stdout.readline() if ready else b""
        proc.stdout.close()
        if line.strip() != b"ready":
            proc.kill()
            proc.wait()
            os.close(write_fd)
            raise ChaosError(
                f"the chaos watchdog did not start within {ready_timeout:g}s (see {log_file}); "
                "faults would not be restored if this runner died, so none are injected"
            )
        return cls(proc, write_fd, log_file)

    def stop(self, timeout: float = 5.0) -> None:
        """Tell the watchdog the runner ended normally (it exits without recovering) and reap it."""
        if self._control_fd >= 0:
            with contextlib.suppress(BrokenPipeError):  # it already exited
                os.write(self._control_fd, _EXIT)
            os.close(self._control_fd)
            self._control_fd = -1
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("watchdog %d did not exit within %.1fs; killing it", self.proc.pid, timeout)
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Watchdog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _preload(kinds: list[str]) -> None:
    """Load, while the runner lives, what restoring these kinds of target needs (the Docker SDK takes
    ~100 ms to import and connect), so a recovery after the runner's death starts at once."""
    for kind in kinds:
        try:
            if kind == "docker":
                from k2.chaos.targets.docker_engine import client_for

                client_for(None)
        except Exception as exc:  # recovery will try again, and report, if it needs this
            log.info("preloading %s failed: %s", kind, exc)


def _wait_for_runner(pid: int, starttime: int, control_fd: int, poll_interval: float) -> bool:
    """Block until the runner dies (True) or says it ended normally (False)."""
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except OSError:  # no pidfd (old kernel): fall back to polling /proc
        pidfd = None
    watched = [fd for fd in (pidfd, control_fd) if fd is not None and fd >= 0]
    try:
        # Checked after opening the pidfd, so the pidfd is the runner's and not a reused pid's.
        while is_alive(pid, starttime):
            ready, _, _ = select.select(watched, [], [], poll_interval)
            if control_fd in ready:
                data = os.read(control_fd, 64)
                if _EXIT.strip() in data:
                    return False
                if not data:  # the pipe closed without "exit": keep watching the process itself
                    watched.remove(control_fd)
        return True
    finally:
        if pidfd is not None:
            os.close(pidfd)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the watchdog process (`python -m k2.chaos.watchdog`)."""
    parser = argparse.ArgumentParser(prog="k2.chaos.watchdog", description=__doc__.splitlines()[0])
    parser.add_argument("--journal", required=True, type=Path)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--runner-pid", required=True, type=int)
    parser.add_argument("--runner-starttime", required=True, type=int)
    parser.add_argument("--control-fd", type=int, default=-1)
    parser.add_argument("--poll-interval", type=float, default=0.2)
    parser.add_argument("--lock-timeout", type=float, default=30.0)
    parser.add_argument("--preload", action="append", default=[], help="target kinds to get ready to restore")
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(
        filename=args.log or default_log_path(args.journal),
        level=logging.INFO,
        format="%(asctime)s watchdog[%(process)d] %(levelname)s %(name)s: %(message)s",
    )
    log.info("watching runner pid %d for journal %s", args.runner_pid, args.journal)
    # Tell the runner we watch, then let go of its pipe: a dead runner must not SIGPIPE us.
    os.write(1, b"ready\n")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    if args.preload:
        threading.Thread(target=_preload, args=(args.preload,), daemon=True, name="preload").start()

    died = _wait_for_runner(args.runner_pid, args.runner_starttime, args.control_fd, args.poll_interval)
    if not died:
        log.info("runner %d ended normally; exiting without recovery", args.runner_pid)
        return 0
    detected_at = time.time()
    t0 = time.monotonic()
    log.warning("runner %d died; restoring its faults from %s", args.runner_pid, args.journal)
    summary: dict[str, object] = {"event": "recovered", "runner_pid": args.runner_pid, "detected_at": detected_at}
    code = 0
    try:
        with Journal(args.journal, recover=True, lock_timeout=args.lock_timeout) as journal:
            summary["pending"] = [e.summary() for e in journal.pending()]
            summary["restored"] = [e.summary() for e in journal.recover()]
    except Exception as exc:
        log.exception("recovery failed")
        summary |= {"event": "recovery_failed", "error": str(exc)}
        code = 1
    summary |= {"recover_s": round(time.monotonic() - t0, 4), "finished_at": time.time()}
    log.info("%s", json.dumps(summary, sort_keys=True))
    return code


if __name__ == "__main__":
    sys.exit(main())
