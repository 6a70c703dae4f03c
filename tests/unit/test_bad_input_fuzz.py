"""Bad input of every shape, generated: the proxy API, the registry API, CLI arguments, state and journal
files. Whatever arrives, the answer is a 4xx with a JSON error (or exit 2 with one line), never a 5xx or
a traceback, and a refused request changes nothing. Loopback only; examples bounded for CI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k2.chaos.journal import read_journal
from k2.chaos.proxy import EchoServer, ProxyServer
from k2.cli import main
from k2.platform.registry import RegistryServer
from k2.stack import state as statefile
from k2.stack.errors import ConfigError
from tests.raw_http import request

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

# JSON values that have broken parsers and validators: odd numbers, odd text, odd shapes.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 1023, 65536, 10**400, 2**63]), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12), st.sampled_from(["²", "١٢", "0x10", "127.0.0.1:²", "0.0.0.0:0", "[::]:0", "a\nb", "/"]),
)  # fmt: skip
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                      max_size=3), max_leaves=8)  # fmt: skip
raw_bodies = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"NaN", b'{"a": Infinity}', b"[" * 3000, b'"\\ud800"', b'{"enabled": "false"}', b"1e400"]),
)
fields = ("name", "upstream", "listen", "enabled", "type", "stream", "toxicity", "attributes", "clients")
proxy_bodies = st.one_of(raw_bodies, st.dictionaries(st.sampled_from(fields), values, max_size=6), values)


@pytest.fixture(scope="module")
def proxy_server() -> Iterator[tuple[ProxyServer, EchoServer]]:
    with ProxyServer(api=("127.0.0.1", 0), seed=5) as server, EchoServer("echo") as echo:
        server.create("svc", echo.address)
        server.create("kafka", echo.address, pinned=True)
        yield server, echo


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path_factory.mktemp("registry")) as server:
        yield server


def _encode(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


@SETTINGS
@given(
    method=st.sampled_from(["POST", "PATCH", "DELETE", "PUT", "GET", "OPTIONS", "BREW"]),
    path=st.sampled_from(["/proxies", "/populate", "/proxies/svc", "/proxies/kafka", "/proxies/svc/toxics",
                          "/proxies/svc/toxics/latency_downstream", "/proxies/%ff", "/proxies/a%00b"]),
    body=proxy_bodies,
)  # fmt: skip
def test_proxy_api_never_5xx(proxy_server: tuple[ProxyServer, EchoServer], method: str, path: str, body: Any) -> None:
    server, echo = proxy_server
    before = {p.name: p.to_json() for p in server.proxies()}
    status, answer = request(server.api_address, method, path, _encode(body))
    assert status < 500, answer
    if status >= 400:
        assert isinstance(answer["error"], str) and answer["status"] == status
        assert {p.name: p.to_json() for p in server.proxies()} == before  # refused: nothing changed
    assert server.get("kafka").upstream == echo.address
    for name in {p.name for p in server.proxies()} - {"svc", "kafka"}:
        server.remove(name)
    server.reset()


@SETTINGS
@given(
    method=st.sampled_from(["POST", "PUT", "DELETE", "GET", "OPTIONS", "BREW"]),
    path=st.sampled_from(["/subjects/t/versions", "/subjects/t", "/config", "/config/t", "/subjects/t/versions/²",
                          "/schemas/ids/١", "/compatibility/subjects/t/versions", "/subjects/%ED%A0%80"]),
    body=st.one_of(raw_bodies, values, st.fixed_dictionaries({"schema": values}),
                   st.fixed_dictionaries({"compatibility": values})),
)  # fmt: skip
def test_registry_api_never_5xx(registry: RegistryServer, method: str, path: str, body: Any) -> None:
    status, answer = request(("127.0.0.1", registry.port), method, path, _encode(body))
    assert status < 500, answer
    if status >= 400:
        assert isinstance(answer["message"], str)


@SETTINGS
@given(port=st.text(max_size=8), service=st.sampled_from(["kafka", "s3", "nope", ""]))
def test_cli_port_values_are_one_line_exit_2(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str], port: str, service: str
) -> None:
    if port.isascii() and port.isdigit() and 1024 <= int(port) <= 65535 and service in ("kafka", "s3"):
        return  # a valid port would start a stack: not this test's business
    data_dir = tmp_path_factory.mktemp("cli")
    assert main(["stack", "up", "--data-dir", str(data_dir / "stack"), "--port", f"{service}={port}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("k2: ") and "Traceback" not in err
    assert not (data_dir / "stack" / "stack.json").exists()  # nothing invalid saved


@SETTINGS
@given(content=st.one_of(st.binary(max_size=200), values.map(lambda v: json.dumps(v).encode())))
def test_state_files_are_read_or_refused(tmp_path_factory: pytest.TempPathFactory, content: bytes) -> None:
    data_dir = tmp_path_factory.mktemp("state")
    (data_dir / "stack.json").write_bytes(content)
    try:
        statefile.load(data_dir)
    except ConfigError as exc:
        assert str(data_dir / "stack.json") in str(exc)


@SETTINGS
@given(lines=st.lists(st.one_of(st.binary(max_size=40), values.map(lambda v: json.dumps(v).encode())), max_size=5))
def test_journal_lines_are_read_or_reported(tmp_path_factory: pytest.TempPathFactory, lines: list[bytes]) -> None:
    path = tmp_path_factory.mktemp("journal") / "journal.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
    entries, problems = read_journal(path)
    assert all(str(path) in p for p in problems)
    assert len(entries) + len(problems) <= len(lines)
