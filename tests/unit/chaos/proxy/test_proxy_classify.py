"""Labelling connections by content: Kafka's client.id, for clients that share one listener."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from tests.unit.chaos.proxy.proxy_helpers import connect, nothing_arrives, recv_exactly, recv_until_eof

from k2.chaos.errors import InvalidFault
from k2.chaos.proxy import KafkaClientId, Proxy


def kafka_request(client_id: str, body: bytes = b"\x00") -> bytes:
    """An ApiVersions-like request: size, api_key, api_version, correlation_id, client_id, body."""
    encoded = client_id.encode()
    payload = struct.pack(">hhih", 18, 3, 1, len(encoded)) + encoded + body
    return struct.pack(">i", len(payload)) + payload


def _peeker(data: bytes) -> Callable[[int], bytes]:
    return lambda n: data[:n]


def test_kafka_client_id_is_read_from_the_request_header() -> None:
    classifier = KafkaClientId({"k2-producer": "producer", "k2-consumer": "consumer"})
    assert classifier.labels == {"producer", "consumer"}
    assert classifier.classify(_peeker(kafka_request("k2-consumer"))) == "consumer"
    assert classifier.classify(_peeker(kafka_request("someone-else"))) is None
    assert classifier.classify(_peeker(b"GET / HTTP/1.1\r\n")) is None  # 16 bytes, nonsense length
    assert classifier.classify(_peeker(b"\x00\x01")) is None  # too short
    with pytest.raises(InvalidFault):
        KafkaClientId({})


def test_partial_partition_by_kafka_client_id_on_one_listener(proxy: Proxy) -> None:
    proxy.classify_clients(KafkaClientId({"k2-producer": "producer", "k2-consumer": "consumer"}))
    assert proxy.labels() == ["default", "consumer", "producer"]
    producer, consumer = connect(proxy.listen_address), connect(proxy.listen_address)
    first_p, first_c = kafka_request("k2-producer"), kafka_request("k2-consumer")
    producer.sendall(first_p)
    consumer.sendall(first_c)
    assert recv_exactly(producer, len(first_p)) == first_p  # the peeked bytes are forwarded intact
    assert recv_exactly(consumer, len(first_c)) == first_c
    assert proxy.stats()["connections_by_client"] == {"default": 0, "consumer": 1, "producer": 1}

    with proxy.partition("blackhole", clients=["producer"]):
        producer.sendall(b"more")
        consumer.sendall(b"more")
        assert recv_exactly(consumer, 4) == b"more"
        assert nothing_arrives(producer, 0.3)
    assert recv_exactly(producer, 4) == b"more"

    with proxy.partition("refuse", clients=["producer"]):
        with pytest.raises(ConnectionResetError):
            recv_until_eof(producer)
        with connect(proxy.listen_address) as again:  # same listener: accepted, then reset once identified
            again.sendall(kafka_request("k2-producer"))
            with pytest.raises(ConnectionResetError):
                recv_until_eof(again)
        consumer.sendall(b"still here")
        assert recv_exactly(consumer, 10) == b"still here"
    producer.close()
    consumer.close()
