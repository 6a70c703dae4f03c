"""The HTTP surface, in-process: paths, status codes, Confluent error bodies and content type."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from k2.platform.registry import RegistryServer
from k2.platform.registry.http import CONTENT_TYPE

SCHEMA = json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]})


class Client:
    """A keep-alive HTTP/1.1 connection, like the Confluent client's."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def __call__(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any, str]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Content-Type": CONTENT_TYPE} if data is not None else {}
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        payload = response.read()
        return response.status, json.loads(payload) if payload else None, response.getheader("Content-Type", "")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Client]:
    with RegistryServer(tmp_path) as server:
        client = Client(server.port)
        yield client
        client.conn.close()


def test_health_and_types(api: Client) -> None:
    assert api("GET", "/")[:2] == (200, {})
    assert api("GET", "/subjects")[:2] == (200, [])
    assert api("GET", "/schemas/types")[:2] == (200, ["AVRO"])
    assert api("GET", "/mode")[:2] == (200, {"mode": "READWRITE"})


def test_register_and_read_back(api: Client) -> None:
    status, body, ctype = api("POST", "/subjects/t-value/versions", {"schema": SCHEMA})
    assert (status, body["id"], ctype) == (200, 1, CONTENT_TYPE)
    assert api("GET", "/subjects/t-value/versions")[:2] == (200, [1])
    status, body, _ = api("GET", "/subjects/t-value/versions/latest")
    assert body == {"subject": "t-value", "version": 1, "id": 1, "guid": body["guid"], "schema": SCHEMA}
    assert api("GET", "/schemas/ids/1")[1]["schema"] == SCHEMA
    assert api("GET", "/schemas/ids/1/schema")[1] == json.loads(SCHEMA)
    assert api("GET", "/subjects/t-value/versions/1/schema")[1] == json.loads(SCHEMA)
    assert api("GET", "/schemas/ids/1/subjects")[1] == ["t-value"]
    assert api("GET", "/schemas/ids/1/versions")[1] == [{"subject": "t-value", "version": 1}]
    assert api("POST", "/subjects/t-value", {"schema": SCHEMA})[1]["version"] == 1


def test_subject_names_are_url_decoded(api: Client) -> None:
    subject = "odd/name with space"
    assert api("POST", f"/subjects/{quote(subject, safe='')}/versions", {"schema": SCHEMA})[0] == 200
    assert api("GET", "/subjects")[1] == [subject]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/subjects/nope/versions", None, 404, 40401),
        ("GET", "/subjects/t-value/versions/9", None, 404, 40402),
        ("GET", "/schemas/ids/9", None, 404, 40403),
        ("GET", "/subjects/t-value/versions/zero", None, 422, 42202),
        ("POST", "/subjects/t-value/versions", {"schema": "{"}, 422, 42201),
        ("POST", "/subjects/t-value/versions", {"schema": SCHEMA.replace('"int"', '"strng"')}, 422, 42201),
        ("PUT", "/config", {"compatibility": "MAYBE"}, 422, 42203),
        ("GET", "/config/t-value", None, 404, 40408),
        ("DELETE", "/subjects/t-value?permanent=true", None, 404, 40405),
        ("DELETE", "/subjects/t-value/versions/1?permanent=true", None, 404, 40407),
        ("GET", "/no/such/path", None, 404, 404),
        ("PATCH", "/subjects", None, 405, 405),
        ("PUT", "/subjects", None, 405, 405),
    ],
)
def test_errors_have_confluent_codes(
    api: Client, method: str, path: str, body: Any, status: int, code: int | None
) -> None:
    api("POST", "/subjects/t-value/versions", {"schema": SCHEMA})
    got_status, got, ctype = api(method, path, body)
    assert got_status == status
    if code is not None:
        assert got["error_code"] == code and isinstance(got["message"], str)
        assert ctype == CONTENT_TYPE


def test_incompatible_registration_is_409(api: Client) -> None:
    api("POST", "/subjects/t-value/versions", {"schema": SCHEMA})
    evolved = json.loads(SCHEMA)
    evolved["fields"].append({"name": "b", "type": "string"})
    status, body, _ = api("POST", "/subjects/t-value/versions", {"schema": json.dumps(evolved)})
    assert (status, body["error_code"]) == (409, 409)
    assert body["message"].startswith(
        'Schema being registered is incompatible with an earlier schema for subject "t-value"'
    )
    status, body, _ = api(
        "POST", "/compatibility/subjects/t-value/versions/latest?verbose=true", {"schema": json.dumps(evolved)}
    )
    assert status == 200 and body["is_compatible"] is False
    assert any("READER_FIELD_MISSING_DEFAULT_VALUE" in m for m in body["messages"])
    status, body, _ = api("POST", "/compatibility/subjects/t-value/versions", {"schema": json.dumps(evolved)})
    assert body == {"is_compatible": False}


def test_malformed_json_body_is_400(api: Client) -> None:
    status, body, _ = api("POST", "/subjects/t-value/versions", raw=b"{nope")
    assert (status, body["error_code"]) == (400, 400)


def test_query_flags_accept_python_booleans(api: Client) -> None:
    api("POST", "/subjects/t-value/versions?normalize=False", {"schema": SCHEMA})
    api("DELETE", "/subjects/t-value")
    assert api("GET", "/subjects?deleted=True")[1] == ["t-value"]
    assert api("GET", "/subjects?deleted=false")[1] == []
    assert api("GET", "/subjects/t-value/versions?deleted=true&offset=0&limit=-1")[1] == [1]
