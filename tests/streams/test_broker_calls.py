"""`broker_calls`: what turns a client's failure into memlake's error, at every edge that talks to Kafka."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from memlake.errors import BrokerUnavailableError, TopicsNotReadyError
from memlake.settings import KafkaSettings, Settings
from serving.service import KafkaOffsetProbe
from streams.admin import describe_topics, ensure_topics
from streams.broker_calls import broker_calls
from streams.producer import EventProducer
from streams.reader import end_offsets
from streams.tail import LogTail


@pytest.mark.parametrize(
    ("raised", "named"),
    [
        (KafkaTimeoutError("Failed to get offsets by timestamps in 30000 ms"), "KafkaTimeoutError"),
        (KafkaConnectionError("socket disconnected"), "KafkaConnectionError"),
        (ConnectionRefusedError(111, "Connection refused"), "ConnectionRefusedError"),
    ],
)
def test_a_client_or_socket_error_names_the_broker_the_call_and_the_cause(
    raised: Exception, named: str
) -> None:
    with (
        pytest.raises(BrokerUnavailableError) as caught,
        broker_calls("h1:9092,h2:9092", "end offsets of 't'"),
    ):
        raise raised
    error = caught.value
    assert error.bootstrap == "h1:9092,h2:9092"
    assert error.problem.startswith(f"end offsets of 't': {named}")
    assert str(error).startswith("Kafka at h1:9092,h2:9092 is unavailable: end offsets of 't': ")
    assert error.__cause__ is raised


def test_memlakes_own_errors_pass_through_as_they_are() -> None:
    own = TopicsNotReadyError("h:9092", {"t": "no leader for partition 0"}, waited_s=1.0)
    with pytest.raises(TopicsNotReadyError) as caught, broker_calls("h:9092", "creating topics"):
        raise own
    assert caught.value is own


def test_other_errors_are_not_taken_for_an_outage() -> None:
    with pytest.raises(ValueError, match="a bug"), broker_calls("h:9092", "reading 't'"):
        raise ValueError("a bug")


def test_a_call_that_succeeds_returns_what_it_returned() -> None:
    def offsets() -> dict[int, int]:
        with broker_calls("h:9092", "end offsets of 't'"):
            return {0: 12}

    assert offsets() == {0: 12}


@pytest.fixture
def nobody_home() -> KafkaSettings:
    """Kafka settings naming a port nothing listens on, with the shortest request timeout."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return KafkaSettings(bootstrap=f"127.0.0.1:{port}", request_timeout_ms=1000)


def _tail(settings: KafkaSettings) -> object:
    with LogTail(settings):
        return None


def _producer(settings: KafkaSettings) -> object:
    with EventProducer(settings) as producer:
        return producer.send_raw(b"k", b"{}")


def _probe(settings: KafkaSettings) -> object:
    return KafkaOffsetProbe(Settings(kafka=settings)).end_offsets()


@pytest.mark.parametrize(
    ("edge", "call"),
    [
        (lambda s: end_offsets(s, s.events_topic), "connecting a consumer"),
        (ensure_topics, "connecting an admin client"),
        (describe_topics, "connecting a consumer"),
        (_tail, "connecting a consumer"),
        (_producer, "connecting a producer"),
        (_probe, "end offsets of 'memlake.events'"),
    ],
    ids=["reader", "admin", "describe", "tail", "producer", "serving-probe"],
)
def test_every_edge_that_talks_to_kafka_says_which_call_found_no_broker(
    nobody_home: KafkaSettings, edge: Callable[[KafkaSettings], object], call: str
) -> None:
    with pytest.raises(BrokerUnavailableError) as caught:
        edge(nobody_home)
    assert caught.value.bootstrap == nobody_home.bootstrap
    assert caught.value.problem.startswith(f"{call}: KafkaTimeoutError"), caught.value.problem
