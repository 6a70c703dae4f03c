"""The embedded stack on real services: round trips, stop/start and kill -9 keep every piece of data."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from k2.stack import LocalStack
from k2.stack.services.seaweed import SOCKET_DIR, s3_client, socket_names
from tests.integration.stack.helpers import (
    assert_data_survived,
    committed_offset,
    consume_and_commit,
    processes_under,
    produce,
    run_k2,
    seed_data,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(stack_dir: Path) -> Iterator[LocalStack]:
    with LocalStack(stack_dir) as running:
        yield running
        stores = [s for s in running.state().services.values() if s.name in ("s3", "kafka-store")]
    assert processes_under(stack_dir) == []
    left = [name for svc in stores for name in socket_names(svc) if os.path.lexists(f"{SOCKET_DIR}/{name}")]
    assert left == [], "SeaweedFS's unix sockets outlived the stack"


def test_round_trip_through_each_service(stack: LocalStack) -> None:
    ep = stack.endpoints()
    topic = f"rt-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": ep.kafka_bootstrap})  # kept alive until the result arrives
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    produce(ep, topic, 200)
    values = consume_and_commit(ep, topic, "rt-group", 200)
    assert sorted(values) == sorted(f"{topic}-{i}".encode() for i in range(200))
    assert committed_offset(ep, topic, "rt-group") == 200

    s3 = s3_client(ep.s3_endpoint, ep.s3_access_key, ep.s3_secret_key)
    s3.put_object(Bucket=ep.s3_bucket, Key="a/b.bin", Body=b"\x00\x01" * 1000)
    assert s3.get_object(Bucket=ep.s3_bucket, Key="a/b.bin")["Body"].read() == b"\x00\x01" * 1000
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=ep.s3_bucket, Prefix="a/")["Contents"]] == ["a/b.bin"]

    with psycopg.connect(ep.postgres_uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE trades (id int PRIMARY KEY, px numeric(18,8))")
        conn.execute("INSERT INTO trades VALUES (1, 101.25), (2, 99.5)")
        assert conn.execute("SELECT sum(px) FROM trades").fetchone()[0] == pytest.approx(200.75)


def test_s3_enforces_credentials_and_binds_loopback_only(stack: LocalStack) -> None:
    ep = stack.endpoints()
    wrong = s3_client(ep.s3_endpoint, ep.s3_access_key, "not-the-secret")
    with pytest.raises(Exception, match="SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied"):
        wrong.list_buckets()
    state = stack.state()
    for name in ("s3", "kafka-store"):
        assert "-ip.bind=127.0.0.1" in state.services[name].argv


def test_clients_reach_every_service_through_the_fault_proxy(stack: LocalStack) -> None:
    """Two addresses per service: the process listens on one, clients (and Kafka's advertised
    listener) use the other, which is the fault proxy's."""
    import json
    import urllib.request

    state = stack.state()
    with urllib.request.urlopen(f"{stack.endpoints().fault_proxy_url}/proxies", timeout=10) as response:
        proxies = json.loads(response.read())
    for name, svc in state.services.items():
        if name == "fault-proxy":
            continue
        assert svc.listen != svc.advertised
        assert proxies[name]["listen"] == str(svc.advertised)
        assert proxies[name]["upstream"] == str(svc.listen)
    assert f"tcp://{state.services['kafka'].advertised}" in state.services["kafka"].argv


def test_stop_and_start_each_service_keeps_data(stack: LocalStack) -> None:
    ep = stack.endpoints()
    seeded = seed_data(ep)
    for name in ("kafka", "kafka-store", "s3", "postgres", "schema-registry", "api", "fault-proxy"):
        old_pid = stack.state().services[name].process.pid
        assert stack.stop_service(name).startswith(("stopped", "killed"))
        assert stack.state().services[name].process is None
        assert stack.start_service(name).process.pid != old_pid
    assert all(s.healthy for s in stack.status())
    assert_data_survived(stack.endpoints(), seeded)


def test_kill_9_is_reported_down_and_up_brings_it_back(stack: LocalStack) -> None:
    seeded = seed_data(stack.endpoints())
    for name in ("kafka", "postgres", "s3"):
        os.kill(stack.state().services[name].process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sum(s.state == "down" for s in stack.status()) < 3:
        time.sleep(0.05)
    states = {s.name: s.state for s in stack.status()}
    assert states == {
        "fault-proxy": "healthy",
        "kafka-store": "healthy",
        "kafka": "down",
        "s3": "down",
        "postgres": "down",
        "schema-registry": "healthy",
        "api": "healthy",
    }

    cli = run_k2("stack", "status", "--data-dir", str(stack.data_dir))
    assert cli.returncode == 1
    assert "stale state" in cli.stderr and "k2 stack up" in cli.stderr

    stack.up()
    assert all(s.healthy for s in stack.status())
    assert_data_survived(stack.endpoints(), seeded)


def test_cli_up_status_env_logs_down(stack_dir: Path) -> None:
    up = run_k2("stack", "up", "--data-dir", str(stack_dir))
    try:
        assert up.returncode == 0, up.stderr
        assert "all services healthy" in up.stderr
        status = run_k2("stack", "status", "--data-dir", str(stack_dir))
        assert status.returncode == 0
        assert status.stdout.count("healthy") == 7
        env = run_k2("stack", "env", "--data-dir", str(stack_dir))
        exports = dict(line.removeprefix("export ").split("=", 1) for line in env.stdout.splitlines())
        assert exports["K2_KAFKA_BOOTSTRAP_SERVERS"].startswith("127.0.0.1:")
        assert exports["K2_POSTGRES_URI"].startswith("postgresql://k2:")
        assert exports["K2_API_URL"].startswith("http://127.0.0.1:")
        logs = run_k2("stack", "logs", "kafka", "--data-dir", str(stack_dir))
        assert logs.returncode == 0 and "listening on" in logs.stdout
    finally:
        down = run_k2("stack", "down", "--data-dir", str(stack_dir))
    assert down.returncode == 0
    assert processes_under(stack_dir) == []
    status = run_k2("stack", "status", "--data-dir", str(stack_dir))
    assert status.returncode == 1 and status.stdout.count("stopped") >= 7
