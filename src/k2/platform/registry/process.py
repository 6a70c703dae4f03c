"""Run the registry as a child process: start, wait until ready (with a deadline), kill -9, restart.

Tests and stack launchers need the real process (to kill it for real); this keeps the
start-and-wait logic in one place. Output goes to a log file (default: <data-dir>/server.log),
which is also where readiness is read from: no pipe that could fill up and block the child.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from k2.platform.errors import RegistryProcessError

__all__ = ["RegistryProcess"]

_READY = re.compile(rb"ready on (http://[^\s:]+:(\d+))")


class RegistryProcess:
    """One `python -m k2.platform.registry` child; after the first start the port stays fixed."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: str | os.PathLike[str] | None = None,
        extra_args: tuple[str, ...] = (),
        python: str = sys.executable,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.log_path = Path(log_path) if log_path else self.data_dir / "server.log"
        self.extra_args = extra_args
        self.python = python
        self.url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 20.0) -> RegistryProcess:
        """Start and return once the child logged its ready line; RegistryProcessError otherwise."""
        if self.alive():
            raise RegistryProcessError(f"registry pid {self.pid} is already running", remedy="stop it first")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        cmd = [self.python, "-m", "k2.platform.registry", "--host", self.host, "--port", str(self.port)]
        cmd += ["--data-dir", str(self.data_dir), *self.extra_args]
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(offset)
                match = _READY.search(log_file.read())
            if match:
                self.url = match[1].decode()
                self.port = int(match[2])
                return self
            if self._proc.poll() is not None:
                raise RegistryProcessError(
                    f"registry exited with status {self._proc.returncode} before it was ready; "
                    f"log {self.log_path}:\n{self.log_tail(offset)}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RegistryProcessError(
                    f"registry did not log 'ready on' within {timeout:.0f}s; log {self.log_path}:\n"
                    f"{self.log_tail(offset)}"
                )
            time.sleep(0.02)

    def log_tail(self, offset: int = 0, lines: int = 20) -> str:
        try:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(offset)
                text = log_file.read().decode(errors="replace")
        except OSError:
            return "<no log>"
        return "\n".join(text.splitlines()[-lines:])

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL (the crash case) and reap the child."""
        self._signal(signal.SIGKILL, timeout)

    def terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM; SIGKILL if it has not exited within `timeout`."""
        try:
            self._signal(signal.SIGTERM, timeout)
        except subprocess.TimeoutExpired:
            self.kill(timeout)

    def _signal(self, signum: int, timeout: float) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signum)
        self._proc.wait(timeout=timeout)

    def restart(self, timeout: float = 20.0) -> RegistryProcess:
        """Start again on the same port and data dir (after kill() or terminate())."""
        self.terminate()
        return self.start(timeout)

    def __enter__(self) -> RegistryProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.terminate()
