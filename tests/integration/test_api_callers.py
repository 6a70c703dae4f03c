"""Who may drive K2's APIs: a client running as another user gets 403 for every change to the fault
proxy and the schema registry, while the owner's unchanged toxiproxy-python calls succeed; and through
the stack's fault proxy, whose port the registry's clients use, another user is not let in at all.

Needs root (to run the other client as `nobody`); the client is a stdlib-only script run by the
system's python3 with `subprocess`'s `user=`, so it needs nothing from this checkout.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import toxiproxy
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from toxiproxy.api import APIConsumer

from k2.chaos.proxy import EchoServer, ProxyServer
from k2.platform.registry import RegistryServer
from k2.stack import LocalStack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user"),
]

CLIENT = r"""
import json, sys, urllib.error, urllib.request
out = []
for method, url, body in json.loads(sys.stdin.read()):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            out.append([r.status, r.read().decode()])
    except urllib.error.HTTPError as e:
        out.append([e.code, e.read().decode()])
    except (urllib.error.URLError, OSError) as e:  # no HTTP answer at all: status 0
        out.append([0, repr(getattr(e, "reason", e))])
print(json.dumps(out))
"""


def as_nobody(calls: list[tuple[str, str, object]]) -> list[tuple[int, str]]:
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    done = subprocess.run(
        [python, "-c", CLIENT], input=json.dumps(calls), user="nobody", group=pwd.getpwnam("nobody").pw_gid,
        extra_groups=[], capture_output=True, text=True, timeout=60, check=True, cwd="/",
    )  # fmt: skip
    return [(status, text) for status, text in json.loads(done.stdout)]


@pytest.fixture
def proxy_api() -> Iterator[ProxyServer]:
    saved = (APIConsumer.host, APIConsumer.port)
    with ProxyServer(api=("127.0.0.1", 0), seed=1) as server:
        APIConsumer.host, APIConsumer.port = server.api_address
        yield server
    APIConsumer.host, APIConsumer.port = saved


def test_only_the_owner_drives_the_fault_proxy(proxy_api: ProxyServer) -> None:
    with EchoServer("echo") as echo:
        client = toxiproxy.Toxiproxy()
        proxy = client.create(upstream=f"127.0.0.1:{echo.address[1]}", name="svc")  # the owner: unchanged client
        proxy.add_toxic(type="latency", attributes={"latency": 10})
        url = proxy_api.api_url
        answers = as_nobody([
            ("GET", f"{url}/proxies", None),
            ("POST", f"{url}/proxies", {"name": "evil", "upstream": f"127.0.0.1:{echo.address[1]}"}),
            ("POST", f"{url}/proxies/svc", {"upstream": "127.0.0.1:9"}),
            ("POST", f"{url}/proxies/svc/toxics", {"type": "timeout", "attributes": {"timeout": 0}}),
            ("DELETE", f"{url}/proxies/svc/toxics/latency_downstream", None),
            ("DELETE", f"{url}/proxies/svc", None),
            ("POST", f"{url}/reset", None),
            ("POST", f"{url}/populate", []),
        ])  # fmt: skip
        assert answers[0][0] == 200 and "svc" in json.loads(answers[0][1])
        for status, text in answers[1:]:
            assert status == 403 and "only its owner" in json.loads(text)["error"], text
        assert set(client.proxies()) == {"svc"}
        assert [t.name for t in proxy.toxics().values()] == ["latency_downstream"]
        assert proxy_api.get("svc").upstream == echo.address
        proxy.destroy_toxic("latency_downstream")
        client.reset()
        proxy.destroy()
        assert client.proxies() == {}


def test_only_the_owner_changes_the_registry(tmp_path: Path) -> None:
    schema = json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]})
    with RegistryServer(tmp_path) as server:
        url = server.url
        answers = as_nobody([
            ("GET", f"{url}/subjects", None),
            ("POST", f"{url}/compatibility/subjects/t/versions", {"schema": schema}),
            ("POST", f"{url}/subjects/t/versions", {"schema": schema}),
            ("PUT", f"{url}/config", {"compatibility": "NONE"}),
            ("DELETE", f"{url}/config", None),
            ("DELETE", f"{url}/subjects/t", None),
        ])  # fmt: skip
        assert answers[0] == (200, "[]")
        assert answers[1][0] in (200, 404)  # a read: not refused
        for status, text in answers[2:]:
            assert status == 403 and json.loads(text)["error_code"] == 40301, text
        assert server.registry.get_config(None)["compatibilityLevel"] == "BACKWARD"
        assert server.registry.subjects() == []


def test_only_the_owner_reaches_the_registry_through_the_fault_proxy(stack_dir: Path) -> None:
    """The registry knows its caller by the uid owning the socket it accepted: through the fault proxy that
    is the proxy's (the owner's), so the proxy in front of it must itself admit only the owner and root,
    and answer another user 403 as the registry would (also after a request body bigger than the socket
    buffers, which the proxy must read and drop rather than reset the answer away)."""
    schema = json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]})
    big = json.dumps({"type": "record", "name": "B", "doc": "x" * 4_000_000, "fields": []})
    with LocalStack(stack_dir) as stack:
        url = stack.endpoints().schema_registry_url  # the fault proxy's port for the registry
        answers = as_nobody([
            ("POST", f"{url}/subjects/t/versions", {"schema": schema}),
            ("PUT", f"{url}/config", {"compatibility": "NONE"}),
            ("DELETE", f"{url}/subjects/owned-value", None),
            ("GET", f"{url}/subjects", None),
            ("POST", f"{url}/subjects/big/versions", {"schema": big}),
        ])  # fmt: skip
        for status, text in answers:
            assert status == 403, f"another user was not refused 403 through the proxy: {status} {text}"
            error = json.loads(text)
            assert error["error_code"] == 40301 and "owner" in error["message"], text
        owner = SchemaRegistryClient({"url": url})  # the owner's unchanged client, through the same port
        assert owner.register_schema("owned-value", Schema(schema, "AVRO")) >= 1
        assert owner.get_subjects() == ["owned-value"]
        assert owner.get_compatibility() != "NONE"
        api = stack.endpoints().fault_proxy_url
        with urllib.request.urlopen(f"{api}/proxies/schema-registry", timeout=10) as response:
            assert json.loads(response.read())["owner_only"] is True
