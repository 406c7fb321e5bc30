"""The local broker for real: lifecycle errors, a forced producer retry, and a SIGKILL mid-stream.

These tests use the private broker (tests/conftest.py: other ports, its home under a
temporary folder), so that pausing or killing it never touches the shared session broker.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.broker import LocalBroker
from memlake.errors import BrokerError, BrokerUnavailableError, WriteNotConfirmedError
from memlake.events import Event, parse_event
from memlake.settings import BrokerSettings, KafkaSettings
from streams.admin import ensure_topics
from streams.producer import EventProducer
from tests.memlake import builders as b
from tests.streams.log_helpers import read_all
from tests.waiting import until

pytestmark = pytest.mark.integration


def _topic(broker: LocalBroker, partitions: int, **overrides: int) -> KafkaSettings:
    name = f"faults.{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(
        bootstrap=broker.bootstrap,
        events_topic=name,
        dlq_topic=f"{name}.dlq",
        partitions=partitions,
        **overrides,  # type: ignore[arg-type]
    )
    ensure_topics(kafka)
    return kafka


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- lifecycle ------------------------------------------------------------------


def test_starting_twice_reuses_the_running_broker(private_broker: LocalBroker) -> None:
    first = private_broker.status()
    again = private_broker.up()
    assert first.running
    assert again.running
    assert again.pid == first.pid
    assert "running (pid" in str(again)


def test_a_taken_port_is_a_clear_error_naming_it_and_the_log(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = LocalBroker(BrokerSettings(home=tmp_path / "kafka", port=port, controller_port=_free_port()))
        with pytest.raises(BrokerError) as info:
            broker.up()
    assert f"port {port}" in str(info.value)
    assert info.value.log_file == str(tmp_path / "kafka" / "broker.log")
    assert str(tmp_path / "kafka" / "broker.log") in str(info.value)


def test_missing_java_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    broker = LocalBroker(
        BrokerSettings(home=tmp_path / "kafka", port=_free_port(), controller_port=_free_port())
    )
    with pytest.raises(BrokerError, match="Java is not on PATH"):
        broker.up()


def test_a_broker_that_dies_at_start_names_the_cause_and_the_log(tmp_path: Path) -> None:
    settings = BrokerSettings(
        home=tmp_path / "kafka", port=_free_port(), controller_port=_free_port(), heap="2k"
    )
    broker = LocalBroker(settings)
    with pytest.raises(BrokerError) as info:
        broker.up()
    message = str(info.value)
    assert "exited during start-up" in message
    assert "heap" in message.lower()
    assert info.value.log_file == str(broker.log_file)
    assert not broker.status().running


# --- delivery under faults ---------------------------------------------------------


def _records(kafka: KafkaSettings) -> list[bytes]:
    return [r.value or b"" for r in read_all(kafka)]


def test_a_forced_retry_does_not_duplicate_with_the_idempotent_producer(
    private_broker: LocalBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker is paused (SIGSTOP) while a send is in flight: the client times the request
    out and sends it again; when the broker resumes it receives both copies. The plain
    producer (the control) writes the event twice; memlake's idempotent producer once."""
    from kafka import KafkaProducer

    def paused_send(send: object) -> None:
        pid = private_broker.status().pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            send_future = send()  # type: ignore[operator]
            time.sleep(5)  # > request_timeout_ms: the client gives up on this request and retries
        finally:
            os.kill(pid, signal.SIGCONT)
        send_future.get(timeout=60)

    # Control: without idempotence, a retry after a lost response duplicates the record.
    plain_topic = _topic(private_broker, 1)
    plain = KafkaProducer(
        bootstrap_servers=[private_broker.bootstrap],
        enable_idempotence=False,
        acks="all",
        retries=10,
        request_timeout_ms=2000,
        max_in_flight_requests_per_connection=1,
    )
    try:
        plain.send(plain_topic.events_topic, b"warm-up").get(timeout=30)
        paused_send(lambda: plain.send(plain_topic.events_topic, key=b"cube-1", value=b"once, please"))
    finally:
        plain.close(timeout=10)
    assert _records(plain_topic).count(b"once, please") == 2

    kafka = _topic(private_broker, 1, request_timeout_ms=2000)
    event = b.added("m1")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kafka.producer.sender"), EventProducer(kafka) as producer:
        producer.send(b.created())
        paused_send(lambda: producer.send_raw(event.cube_id.encode(), _bytes(event)))
    assert any("retrying" in message for message in caplog.messages), "no retry happened"
    events = [parse_event(raw) for raw in _records(kafka)]
    assert [e.event_id for e in events].count(event.event_id) == 1


def _bytes(event: Event) -> bytes:
    from memlake.events import serialize_event

    return serialize_event(event)


@pytest.mark.usefixtures("quiet_kafka_client")
def test_sigkill_mid_stream_keeps_every_acknowledged_event_exactly_once(private_broker: LocalBroker) -> None:
    kafka = _topic(private_broker, 3, request_timeout_ms=3000, delivery_timeout_ms=60_000)
    acknowledged: list[str] = []
    attempted: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def write() -> None:
        sequence = 0
        producer = EventProducer(kafka)
        try:
            while not stop.is_set():
                batch = [
                    b.added(f"m{sequence + j}").model_copy(update={"cube_id": f"cube-{(sequence + j) % 7}"})
                    for j in range(10)
                ]
                sequence += 10
                attempted.extend(str(e.event_id) for e in batch)
                try:
                    acknowledged.extend(d.event_id for d in producer.send(batch))
                except (WriteNotConfirmedError, BrokerUnavailableError) as e:
                    # What an application does: note it, make a new producer, go on. A new
                    # producer made while the broker is down fails to bootstrap after one
                    # request timeout (BrokerUnavailableError) and is replaced the same way.
                    failures.append(str(e))
                    producer.close()
                    producer = EventProducer(kafka)
        finally:
            producer.close()

    writer = threading.Thread(target=write, name="writer")
    writer.start()
    try:
        _wait_for(lambda: len(acknowledged) >= 200, timeout_s=60)
        private_broker.kill()  # SIGKILL, mid-stream: sends are in flight
        assert not private_broker.status().running
        private_broker.up()
        at_restart = len(acknowledged)
        _wait_for(lambda: len(acknowledged) >= at_restart + 200, timeout_s=120)

    finally:
        stop.set()
        writer.join(timeout=120)
    assert not writer.is_alive()
    logged = [str(parse_event(raw).event_id) for raw in _records(kafka)]
    counts = Counter(logged)
    assert [event_id for event_id, n in counts.items() if n > 1] == []  # none twice
    missing = set(acknowledged) - set(counts)
    assert missing == set(), f"{len(missing)} acknowledged events lost"  # none lost
    assert set(counts) <= set(attempted)
    # Order per cube survives too: each cube's events sit in the order they were made.
    by_cube: dict[str, list[int]] = {}
    for raw in _records(kafka):
        event = parse_event(raw)
        by_cube.setdefault(event.cube_id, []).append(int((event.memory_id or "m0")[1:]))
    assert all(ids == sorted(ids) for ids in by_cube.values())


def _wait_for(condition: Callable[[], object], *, timeout_s: float) -> None:
    until(condition, timeout_s=timeout_s, every_s=0.1)
