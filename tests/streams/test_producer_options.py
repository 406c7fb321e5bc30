"""The producer's kafka-python options and arguments: what every write is promised, what is refused."""

from __future__ import annotations

import socket
import time

import pytest

from memlake.errors import BrokerUnavailableError, ConfigError
from memlake.settings import KafkaSettings
from streams.producer import EventProducer, producer_options
from tests.memlake import builders as b


def test_every_write_is_idempotent_and_waits_for_all_replicas() -> None:
    options = producer_options(
        KafkaSettings(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username="memlake",
            sasl_password="s3cret",
            ssl_cafile="/etc/kafka/ca.pem",
        )
    )
    assert options["enable_idempotence"] is True
    assert options["acks"] == "all"
    # Idempotence needs at most 5 requests in flight and retries left: more would turn it off.
    assert options["max_in_flight_requests_per_connection"] <= 5
    assert options["retries"] > 0
    # Connection and security settings reach the client under kafka-python's names.
    assert {k: options[k] for k in ("security_protocol", "sasl_mechanism", "ssl_cafile")} == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "ssl_cafile": "/etc/kafka/ca.pem",
    }
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("memlake", "s3cret")
    assert "ssl_certfile" not in options  # unset: left to kafka-python's default


def test_a_delivery_timeout_shorter_than_one_request_is_a_config_error() -> None:
    settings = KafkaSettings(request_timeout_ms=30_000, linger_ms=5, delivery_timeout_ms=10_000)
    with pytest.raises(ConfigError, match=r"kafka\.delivery_timeout_ms.*30005 ms"):
        producer_options(settings)
    # The same error from the producer, on its first send, before any connection is tried.
    with EventProducer(settings) as producer, pytest.raises(ConfigError):
        producer.send_raw(b"k", b"v")


def test_a_chunk_below_one_is_refused_before_anything_is_sent() -> None:
    # Refused before the producer connects: no broker is needed to see it.
    producer = EventProducer(KafkaSettings(bootstrap="127.0.0.1:1"))
    with producer, pytest.raises(ValueError, match="chunk must be at least 1, not 0"):
        producer.send_many([], chunk=0)


def test_an_unreachable_broker_is_a_clear_error_after_one_request_timeout() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = KafkaSettings(bootstrap=f"127.0.0.1:{port}", request_timeout_ms=1000, delivery_timeout_ms=2000)
    began = time.monotonic()
    producer = EventProducer(settings)
    with producer, pytest.raises(BrokerUnavailableError, match=f"127.0.0.1:{port}"):
        producer.send(b.created())
    assert time.monotonic() - began < 15  # not kafka-python's own 30 s
