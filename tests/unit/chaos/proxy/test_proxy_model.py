"""Toxics as values: validation at construction, the registry, JSON shape, update."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from k2.chaos.errors import ChaosError, InvalidFault, UnsafeTarget
from k2.chaos.proxy import Chunk, Proxy, Stream, Toxic, ToxicContext, register, toxic_types
from k2.chaos.proxy.toxic import Attribute, create_toxic

BUILTINS = {"latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data", "blackhole"}


def test_every_builtin_is_registered() -> None:
    assert set(toxic_types()) >= BUILTINS


def test_defaults_follow_toxiproxy() -> None:
    toxic = create_toxic("latency", latency=100)
    assert toxic.name == "latency_downstream"
    assert toxic.stream is Stream.DOWNSTREAM
    assert toxic.toxicity == 1.0
    assert toxic.to_json() == {
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"latency": 100, "jitter": 0},
    }


def test_aliases_map_to_toxiproxy_attribute_names() -> None:
    toxic = create_toxic("latency", latency_ms=100, jitter_ms=50)
    assert toxic.attributes == {"latency": 100, "jitter": 50}


@pytest.mark.parametrize(
    ("type_name", "fields", "fragment"),
    [
        ("latency", {"latency": -1}, "must be >= 0"),
        ("latency", {"latency": "fast"}, "not a number"),
        ("latency", {"latency": True}, "not a number"),
        ("latency", {"latency": 1.5}, "whole number"),
        ("latency", {"latency": 10, "toxicity": 1.5}, "outside [0, 1]"),
        ("latency", {"latency": 10, "toxicity": -0.1}, "outside [0, 1]"),
        ("latency", {"latency": 10, "stream": "sideways"}, "use 'upstream'"),
        ("latency", {"delay": 10}, "has no attribute 'delay'"),
        ("latency", {"latency": 1, "latency_ms": 2}, "given twice"),
        ("bandwidth", {"rate": -5}, "must be >= 0"),
        ("slicer", {"size_variation": 1}, "needs attribute 'average_size'"),
        ("slicer", {"average_size": 10, "size_variation": 10}, "must be smaller"),
        ("blackhole", {"mode": "vanish"}, "use one of"),
        ("timeout", {"timeout": -1}, "must be >= 0"),
        ("latency", {"latency": 1, "clients": "one"}, "list of client labels"),
        ("nonsense", {}, "unknown; known types"),
    ],
)
def test_invalid_parameters_are_rejected_at_construction(type_name: str, fields: dict, fragment: str) -> None:
    with pytest.raises(InvalidFault, match=None) as info:
        create_toxic(type_name, **fields)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ChaosError)


def test_replace_keeps_identity_fields_and_revalidates() -> None:
    toxic = create_toxic("latency", name="slow", stream="upstream", latency=10)
    new = toxic.replace(toxicity=0.5, attributes={"jitter": 5})
    assert (new.name, new.stream, new.toxicity, new.attributes) == (
        "slow",
        Stream.UPSTREAM,
        0.5,
        {
            "latency": 10,
            "jitter": 5,
        },
    )
    with pytest.raises(InvalidFault):
        toxic.replace(attributes={"latency": -3})


@pytest.mark.parametrize("address", [("10.0.0.1", 80), "192.168.1.1:80", ("0.0.0.0", 0), "example.com:443"])
def test_only_loopback_is_allowed(address: object) -> None:
    with pytest.raises(UnsafeTarget):
        Proxy("x", upstream=address)  # type: ignore[arg-type]
    with pytest.raises(UnsafeTarget):
        Proxy("x", listen=address, upstream=("127.0.0.1", 9))  # type: ignore[arg-type]


def test_proxy_parameters_are_validated() -> None:
    with pytest.raises(InvalidFault, match="no upstream port"):
        Proxy("x")
    with pytest.raises(InvalidFault, match="not 'host:port'"):
        Proxy("x", upstream="localhost")
    with pytest.raises(InvalidFault, match="proxy name"):
        Proxy("", upstream=("127.0.0.1", 9))


class _Marker(Toxic):
    """A custom toxic the proxy has never heard of: it prefixes every chunk."""

    type_name = "test_marker"
    ATTRIBUTES = (Attribute("prefix", str, "!"),)

    def pipe(self, chunk: Chunk, ctx: ToxicContext) -> Iterator[Chunk]:
        yield Chunk(self.attributes["prefix"].encode() + chunk.data, chunk.ts)


def test_a_registered_custom_toxic_is_usable_by_name(proxy: Proxy) -> None:
    register(_Marker)
    from tests.unit.chaos.proxy.proxy_helpers import connect, recv_exactly

    proxy.add_toxic("test_marker", stream="downstream", prefix=">")
    with connect(proxy.listen_address) as sock:
        sock.sendall(b"hi")
        assert recv_exactly(sock, 3) == b">hi"
