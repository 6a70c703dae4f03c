"""Schema registry (k2.platform.registry) as a real process: register latency (fsync per write),
GET /schemas/ids/{id} latency, both sequential and with 8 concurrent keep-alive clients, and the
time to restart (replay) after kill -9 with the registered schemas on disk.

    .venv/bin/python -m benchmarks.bench_registry [--print-only]
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time

from benchmarks.common import fresh_dir, summary, write
from k2.platform.registry import RegistryProcess

SEQUENTIAL = 500
THREADS = 8
PER_THREAD = 100
READS = 5_000
HEADERS = {"Content-Type": "application/vnd.schemaregistry.v1+json"}


def _schema(tag: str) -> str:
    fields = [{"name": "id", "type": "string"}, {"name": "px", "type": "double"}]
    return json.dumps({"schema": json.dumps({"type": "record", "name": f"R{tag}", "fields": fields})})


def _timed(conn: http.client.HTTPConnection, method: str, path: str, body: str | None = None) -> float:
    started = time.perf_counter()
    conn.request(method, path, body=body, headers=HEADERS if body else {})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"{method} {path} -> {response.status}")
    return (time.perf_counter() - started) * 1000


def _concurrent(port: int, work: int, make: object) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = [make(conn, n, i) for i in range(work)]  # type: ignore[operator]
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return latencies, len(latencies) / (time.perf_counter() - started)


def main() -> None:
    with fresh_dir() as root:
        proc = RegistryProcess(root / "registry").start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=30)
            register = [_timed(conn, "POST", f"/subjects/s{i}/versions", _schema(str(i))) for i in range(SEQUENTIAL)]
            reads = [_timed(conn, "GET", f"/schemas/ids/{1 + i % SEQUENTIAL}") for i in range(READS)]
            par_register, register_rate = _concurrent(
                proc.port,
                PER_THREAD,
                lambda c, n, i: _timed(c, "POST", f"/subjects/p{n}-{i}/versions", _schema(f"p{n}_{i}")),
            )
            par_reads, read_rate = _concurrent(
                proc.port, READS // THREADS, lambda c, n, i: _timed(c, "GET", f"/schemas/ids/{1 + i % SEQUENTIAL}")
            )
            schemas = SEQUENTIAL + THREADS * PER_THREAD
            proc.kill()
            started = time.perf_counter()
            proc.start()
            restart = time.perf_counter() - started
        finally:
            proc.kill()
    results = {
        "register_ms": summary(register),
        "get_by_id_ms": summary(reads),
        "register_8_clients_ms": summary(par_register),
        "register_8_clients_per_second": register_rate,
        "get_by_id_8_clients_ms": summary(par_reads),
        "get_by_id_8_clients_per_second": read_rate,
        "restart_after_kill_9_seconds": restart,
        "schemas_on_disk": schemas,
    }
    print(
        f"register: median {summary(register)['median']:.2f} ms, p99 {summary(register)['p99']:.2f} ms; "
        f"8 clients {register_rate:.0f}/s\n"
        f"get by id: median {summary(reads)['median']:.3f} ms, p99 {summary(reads)['p99']:.3f} ms; "
        f"8 clients {read_rate:.0f}/s\n"
        f"restart after kill -9 with {schemas} schemas: {restart:.2f} s"
    )
    if "--print-only" not in sys.argv:
        print(f"written to {write('registry', results)}")


if __name__ == "__main__":
    main()
