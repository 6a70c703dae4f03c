"""A tiny service for the compliance suite's local-process backend: a TCP echo server with a pid file.

python echo_service.py serve PORT PIDFILE   # run it (writes PIDFILE)
python echo_service.py start PORT PIDFILE   # start it detached, return once it answers (a restart command)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time


def answers(port: int, timeout: float) -> bool:
    """A real request: connect, send a line, read it back."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"ping\n")
            return sock.recv(5) == b"ping\n"
    except OSError:
        return False


def serve(port: int, pidfile: str) -> None:
    listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
    with open(pidfile + ".tmp", "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(pidfile + ".tmp", pidfile)

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def start(port: int, pidfile: str) -> int:
    subprocess.Popen([sys.executable, __file__, "serve", str(port), pidfile], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if answers(port, 0.5):
            return 0
        time.sleep(0.02)  # polling for the new process to listen, with a deadline
    return 1


if __name__ == "__main__":
    verb, port_text, path = sys.argv[1:4]
    if verb == "serve":
        serve(int(port_text), path)
    else:
        sys.exit(start(int(port_text), path))
