"""`--brokers N` without services: names, validation, the state kept across restarts, and what each broker gets
(its own fault-proxy port, Kafka client labels, the shared store's disk)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from k2.cli import main
from k2.stack import ConfigError, LocalStack, procs
from k2.stack import state as statefile
from k2.stack.endpoints import endpoints_of
from k2.stack.services import Layout, embedded_services
from k2.stack.services.fault_proxy import FaultProxy
from k2.stack.services.kafka import MAX_BROKERS, Tansu, broker_names, is_broker
from k2.stack.state import Address, ServiceState, StackState


def test_broker_names_and_the_services_of_a_three_broker_stack() -> None:
    assert broker_names(3) == ["kafka", "kafka-2", "kafka-3"]
    assert [is_broker(n) for n in ("kafka", "kafka-9", "kafka-store", "kafka-10", "kafka-1")] == [
        True, True, False, False, False,
    ]  # fmt: skip
    names = list(embedded_services(3))
    assert names[names.index("kafka-store") + 1 : names.index("kafka-store") + 4] == ["kafka", "kafka-2", "kafka-3"]
    assert list(embedded_services()).count("kafka") == 1 and "kafka-2" not in embedded_services()
    with pytest.raises(ValueError, match="kafka-2"):
        Tansu("broker-2")


@pytest.mark.parametrize("asked", [0, MAX_BROKERS + 1, -1, True, "3"])
def test_a_bad_broker_count_is_refused_before_anything_starts(tmp_path: Path, asked: object) -> None:
    with pytest.raises(ConfigError, match=f"from 1 to {MAX_BROKERS}"):
        LocalStack(tmp_path / "stack", brokers=asked)  # type: ignore[arg-type]
    assert not (tmp_path / "stack").exists()


@pytest.mark.parametrize("value", ["0", "x", "10", "-2", ""])
def test_the_cli_refuses_a_bad_brokers_value_with_exit_2(
    tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["stack", "up", "--data-dir", str(tmp_path / "stack"), "--brokers", value])
    assert exited.value.code == 2
    assert f"from 1 to {MAX_BROKERS}" in capsys.readouterr().err


def service(name: str, port: int, process: procs.ProcessId | None = None) -> ServiceState:
    return ServiceState(name, Address("127.0.0.1", port), Address("127.0.0.1", port + 1), "log", [], {}, "/",
                        process=process)  # fmt: skip


def recorded(tmp_path: Path, brokers: int, *, running: bool) -> Path:
    data_dir = tmp_path / "stack"
    data_dir.mkdir()
    me = procs.ProcessId(1, procs.starttime_of(1) or 1) if running else None
    services = {name: service(name, 20000 + 10 * i, me) for i, name in enumerate(broker_names(brokers))}
    statefile.save(StackState(str(data_dir), services=services))
    return data_dir


def test_a_stack_keeps_its_broker_count_and_a_running_one_refuses_another(tmp_path: Path) -> None:
    data_dir = recorded(tmp_path, 3, running=True)
    assert LocalStack(data_dir).brokers == 3  # later verbs need no --brokers
    with pytest.raises(ConfigError, match=r"runs 3 broker\(s\), not 1: stop it first"):
        LocalStack(data_dir, brokers=1)


def test_a_stopped_stack_may_change_its_count_and_forgets_the_brokers_it_drops(tmp_path: Path) -> None:
    data_dir = recorded(tmp_path, 3, running=False)
    stack = LocalStack(data_dir, brokers=1)
    state = statefile.load(data_dir)
    assert state is not None
    stack._plan_missing(state)
    assert not any(name in state.services for name in ("kafka-2", "kafka-3"))


def test_each_broker_gets_its_own_proxy_with_client_labels_and_is_in_the_bootstrap(tmp_path: Path) -> None:
    state = StackState(str(tmp_path), credentials={"s3_access_key": "a", "s3_secret_key": "b", "postgres_user": "u",
                                                   "postgres_password": "p", "postgres_database": "d"})  # fmt: skip
    for i, name in enumerate(["fault-proxy", "kafka-store", *broker_names(3), "s3", "postgres", "schema-registry"]):
        state.services[name] = service(name, 21000 + 10 * i)
    FaultProxy().prepare(Layout(tmp_path), state, state.services["fault-proxy"])
    proxies = {p["name"]: p for p in json.loads((tmp_path / "fault-proxy" / "proxies.json").read_text())["proxies"]}
    for name in broker_names(3):
        svc = state.services[name]
        assert proxies[name]["listen"] == str(svc.advertised) and proxies[name]["upstream"] == str(svc.listen)
        assert "producer" in proxies[name]["kafka_client_ids"]
    assert "kafka_client_ids" not in proxies["kafka-store"]
    endpoints = endpoints_of(state)
    assert endpoints.kafka_bootstrap.split(",") == [str(state.services[n].advertised) for n in broker_names(3)]
    assert endpoints.first_broker == str(state.services["kafka"].advertised)


def test_the_docker_backend_takes_a_broker_count_too(tmp_path: Path) -> None:
    from k2.stack import open_stack

    stack = open_stack(tmp_path / "stack", backend="docker", brokers=3)  # builds nothing until `up`
    assert stack.backend == "docker" and stack.brokers == 3
    assert [n for n in stack.services if is_broker(n)] == broker_names(3)
    assert stack.services["kafka-3"].container_spec is not None  # a container of its own, like `kafka`
