"""The things `bench_proxy` measures: direct, K2's fault proxy and (optionally) Toxiproxy, each a process.

Both proxies are driven through their HTTP API with the same JSON (Toxiproxy's protocol), so K2's
answer to a Toxiproxy client is part of what is measured.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

Address = tuple[str, int]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(address: Address, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(address, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {address[0]}:{address[1]} after {timeout} s") from None
            time.sleep(0.05)  # polling interval of a deadline-bounded wait


def _parse(listen: str) -> Address:
    host, _, port = listen.rpartition(":")
    return (host.strip("[]") or "127.0.0.1", int(port))


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Direct:
    """No proxy: the service's own address."""

    name = "direct"
    pid: int | None = None

    def proxy(self, name: str, upstream: Address, toxics: list[dict[str, Any]] | None = None) -> Address:
        return upstream

    def close(self) -> None:
        pass


class ApiProxy:
    """A proxy daemon with Toxiproxy's API: K2's (`python -m k2.chaos.proxy`) or Toxiproxy's binary."""

    def __init__(self, name: str, argv: list[str], api_port: int, scratch: Path | None = None) -> None:
        self.name = name
        self.scratch = scratch  # a directory of the benchmark's own, removed on close
        self.api = f"http://127.0.0.1:{api_port}"
        quiet = subprocess.DEVNULL
        self.process = subprocess.Popen(argv, stdout=quiet, stderr=quiet, stdin=quiet)
        self.pid = self.process.pid
        try:
            wait_listening(("127.0.0.1", api_port))
        except TimeoutError:
            self.close()
            raise

    @classmethod
    def k2(cls) -> ApiProxy:
        port = free_port()
        scratch = Path(tempfile.mkdtemp(prefix="k2-bench-proxy-"))
        config = scratch / "proxies.json"
        config.write_text(json.dumps({"proxies": []}))
        argv = [sys.executable, "-m", "k2.chaos.proxy", "--api", f"127.0.0.1:{port}", "--config", str(config)]
        return cls("k2", argv, port, scratch)

    @classmethod
    def toxiproxy(cls, binary: str) -> ApiProxy:
        port = free_port()
        return cls("toxiproxy", [binary, "-host", "127.0.0.1", "-port", str(port)], port)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{self.name}: {method} {path} -> {exc.code} {exc.read()!r}") from None
        return json.loads(raw) if raw else None

    def proxy(
        self, name: str, upstream: Address, toxics: list[dict[str, Any]] | None = None, listen: int = 0
    ) -> Address:
        """Create a proxy (the same JSON for both) with its toxics; where clients connect."""
        spec = {"name": name, "listen": f"127.0.0.1:{listen or free_port()}", "upstream": "{}:{}".format(*upstream)}
        created = self.call("POST", "/proxies", spec)
        for toxic in toxics or []:
            self.call("POST", f"/proxies/{name}/toxics", toxic)
        address = _parse(created["listen"])
        wait_listening(address)
        return address

    def close(self) -> None:
        stop(self.process)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM a process this benchmark started, SIGKILL it after 10 s, and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
