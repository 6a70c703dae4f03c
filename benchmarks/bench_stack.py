"""The stack: cold `up` to all-healthy and `down` (median of 5), resident memory per service, and raw
produce throughput through the stack's Kafka (200-byte messages, acks=all, idempotent).

    .venv/bin/python -m benchmarks.bench_stack                    # local backend -> results/stack.json
    .venv/bin/python -m benchmarks.bench_stack --backend docker   # containers  -> results/stack_docker.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks.common import fresh_dir, summary, write
from k2.stack import LocalStack, open_stack, procs

ROUNDS = 5
MESSAGES = 300_000


def rss_mib(pid: int, starttime: int) -> float:
    """Resident memory of a service's whole session (postgres runs one process per backend)."""
    total_kib = 0
    for member in procs.session_members(procs.ProcessId(pid, starttime)):
        for line in Path(f"/proc/{member.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


def session_leaders(stack: LocalStack) -> dict[str, tuple[int, int]]:
    """(pid, starttime) of each service's main process: its own, or its container's init as the host sees it."""
    leaders = {}
    for name, svc in stack.state().services.items():
        if svc.process:
            leaders[name] = (svc.process.pid, svc.process.starttime)
        elif svc.container:
            pid = int(stack.client.api.inspect_container(svc.container)["State"]["Pid"])  # type: ignore[attr-defined]
            leaders[name] = (pid, procs.starttime_of(pid) or 0)
    return leaders


def produce_throughput(bootstrap: str) -> float:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("bench", num_partitions=3, replication_factor=1)])["bench"].result(30)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5,
         "batch.size": 1_000_000, "queue.buffering.max.messages": 500_000}
    )  # fmt: skip
    payload = b"x" * 200
    started = time.perf_counter()
    for _ in range(MESSAGES):
        while True:
            try:
                producer.produce("bench", payload)
                break
            except BufferError:
                producer.poll(0.005)
    assert producer.flush(120) == 0
    return MESSAGES / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("local", "docker"), default="local")
    backend = parser.parse_args().backend
    ups, downs, memory = [], [], {}
    throughput = 0.0
    for round_ in range(ROUNDS):
        with fresh_dir() as data_dir:
            stack = open_stack(data_dir, backend=backend)
            started = time.perf_counter()
            stack.up()
            ups.append(time.perf_counter() - started)
            if round_ == 0:
                memory = {name: round(rss_mib(*pid), 1) for name, pid in session_leaders(stack).items()}
                throughput = produce_throughput(stack.endpoints().kafka_bootstrap)
            started = time.perf_counter()
            stack.down()
            downs.append(time.perf_counter() - started)
    results = {
        "cold_up_seconds": summary(ups),
        "down_seconds": summary(downs),
        "rss_mib_after_start": memory,
        "produce_msgs_per_second": round(throughput),
        "produce_setup": f"{MESSAGES} x 200 B, acks=all, idempotent, 3 partitions",
    }
    path = write("stack" if backend == "local" else f"stack_{backend}", results)
    print(f"cold up: median {summary(ups)['median']:.2f}s   down: median {summary(downs)['median']:.2f}s")
    print(f"rss MiB after start: {memory}")
    print(f"produce: {throughput:,.0f} msg/s   -> {path}")


if __name__ == "__main__":
    main()
