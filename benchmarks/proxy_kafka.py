"""`bench_proxy --kafka`: produce throughput and ack latency through each proxy vs direct to the broker.

A Kafka client connects where the broker advertises, so each target gets its own Tansu broker (in-memory
storage, the stack's binary) advertising that target's address: direct, K2's proxy, Toxiproxy. Runs are
interleaved like the other phases; each run uses fresh producers (acks=all, 200 B messages).

Two runs per producer count and target: throughput from one that produces as fast as the client can, and
ack latency from one paced at `PACED_RATE`, below every target's throughput. In the fast run the p99 ack is
the time a message waits in the client's own queue behind the ones produced before it (it grows with the
run's length: ~12 ms for 20,000 messages, ~100 ms for 100,000), which says little about the proxy. Not idempotent:
with several idempotent producers Tansu 0.6 itself slows to a few thousand msg/s (p99 ack in seconds), which
would hide the proxies' cost.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from typing import Any

from benchmarks.proxy_targets import free_port, stop, wait_listening

MESSAGES = {1: 300_000, 10: 300_000, 100: 20_000}  # per fast run: each lasts a second or more (with 100,000 in
# under half a second, one producer's throughput spread 172,000-279,000 msg/s over 5 runs on every target)
PACED_RATE, PACED_MESSAGES = 2_000, 10_000  # msg/s over all producers, and how many in the latency run: 5 s, so
# its p99 is the 100th slowest ack, not the 30th (with 3,000, 100 producers' runs spread 6.4-10.0 ms)
PRODUCERS = tuple(MESSAGES)
PAYLOAD = b"x" * 200


class Broker:
    """A Tansu broker on a free port, advertising `advertised` (its own port when None)."""

    def __init__(self, advertised: int | None = None) -> None:
        from k2.stack import binaries

        self.port = free_port()
        advertised = advertised or self.port
        argv = [str(binaries.tansu()), "broker", "--cluster-id", "k2-bench",
                "--listener-url", f"tcp://127.0.0.1:{self.port}",
                "--advertised-listener-url", f"tcp://127.0.0.1:{advertised}",
                "--storage-engine", "memory://tansu/"]  # fmt: skip
        quiet = subprocess.DEVNULL
        self.process = subprocess.Popen(argv, stdin=quiet, stdout=quiet, stderr=quiet)
        wait_listening(("127.0.0.1", self.port))

    def close(self) -> None:
        stop(self.process)


def _topic(bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("bench", num_partitions=3, replication_factor=1)])["bench"].result(30)


def produce(bootstrap: str, producers: int, rate: float | None = None) -> dict[str, float]:
    """Messages split across `producers` producers, round robin from one thread, as fast as they are taken
    (`MESSAGES[producers]`) or at `rate` msg/s (`PACED_MESSAGES`); msg/s and p99 ack."""
    from confluent_kafka import Producer

    config = {"bootstrap.servers": bootstrap, "enable.idempotence": False, "acks": "all", "linger.ms": 5,
              "queue.buffering.max.messages": 500_000}  # fmt: skip
    clients = [Producer(config) for _ in range(producers)]
    for client in clients:  # connected and with a producer id before the clock starts
        client.produce("bench", PAYLOAD)
        assert client.flush(60) == 0
    latencies: list[float] = []
    failed: list[Any] = []

    def acked(err: Any, msg: Any, sent: float) -> None:
        if err is not None:
            failed.append(err)
        latencies.append(time.perf_counter() - sent)

    each = (MESSAGES[producers] if rate is None else PACED_MESSAGES) // producers
    started = time.perf_counter()
    for i in range(each):
        for k, client in enumerate(clients):
            if rate is not None:  # a load generator's pacing: serve every client's acks until this one is due
                due = started + (i * producers + k) / rate
                while due > time.perf_counter():
                    _serve(clients)
            while True:
                try:
                    sent = time.perf_counter()
                    client.produce("bench", PAYLOAD, on_delivery=lambda e, m, s=sent: acked(e, m, s))
                    break
                except BufferError:
                    client.poll(0.001)
            client.poll(0)
    deadline = time.monotonic() + 120
    while len(latencies) < each * producers:  # every client's acks as they come, not one client's after another's
        if time.monotonic() > deadline:
            raise TimeoutError(f"{each * producers - len(latencies)} messages unacknowledged after 120 s")
        _serve(clients)
    elapsed = time.perf_counter() - started
    if failed:
        raise RuntimeError(f"{len(failed)} produce requests failed, first: {failed[0]}")
    ordered = sorted(latencies)
    return {"msgs_per_s": each * producers / elapsed, "p99_ack_ms": ordered[int(0.99 * len(ordered))] * 1000}


def _serve(clients: list[Any]) -> None:
    """Run the delivery callbacks every client has ready, then yield the CPU for 0.2 ms (the broker and
    the proxy share the machine's cores with this loop)."""
    for client in clients:
        client.poll(0)
    time.sleep(0.0002)


def produce_phases(targets: list[Any], reps: int) -> dict[str, Any]:
    brokers: dict[str, tuple[Broker, str]] = {}
    try:
        for target in targets:
            if target.name == "direct":
                broker = Broker()
                bootstrap = f"127.0.0.1:{broker.port}"
            else:
                listen = free_port()
                broker = Broker(advertised=listen)
                target.proxy("kafka", ("127.0.0.1", broker.port), listen=listen)
                bootstrap = f"127.0.0.1:{listen}"
            brokers[target.name] = (broker, bootstrap)
            _topic(bootstrap)
        raw: dict[int, dict[str, list[dict[str, float]]]] = {n: {} for n in PRODUCERS}
        for rep in range(reps):
            order = targets if rep % 2 == 0 else list(reversed(targets))
            for n in PRODUCERS:
                for target in order:
                    bootstrap = brokers[target.name][1]
                    fast, paced = produce(bootstrap, n), produce(bootstrap, n, rate=PACED_RATE)
                    run = {"msgs_per_s": fast["msgs_per_s"], "p99_ack_ms": paced["p99_ack_ms"],
                           "p99_ack_fast_ms": fast["p99_ack_ms"]}  # fmt: skip
                    raw[n].setdefault(target.name, []).append(run)
            print(f"kafka repetition {rep + 1}/{reps} done", flush=True)
    finally:
        for broker, _ in brokers.values():
            broker.close()
    return {
        "paced_rate_msg_s": PACED_RATE,
        "producers": {
            str(n): {
                t: {
                    key: {
                        "median": round(statistics.median(r[key] for r in runs), 1),
                        "min": round(min(r[key] for r in runs), 1),
                        "max": round(max(r[key] for r in runs), 1),
                        "runs": [round(r[key], 1) for r in runs],  # by repetition: pairs across targets
                    }
                    for key in ("msgs_per_s", "p99_ack_ms", "p99_ack_fast_ms")
                }
                for t, runs in by_target.items()
            }
            for n, by_target in raw.items()
        },
    }
