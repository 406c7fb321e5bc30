"""A follower waits out Kafka being away; a one-shot run fails at once with the error."""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks._lake_workload import generate, invalid_records
from infra.broker import LocalBroker
from lake.tables import Lake
from memlake.cli import main
from memlake.errors import BrokerUnavailableError, LakeError, StoreUnavailableError, WriteNotConfirmedError
from memlake.settings import KafkaSettings, LakeSettings, Settings
from pipelines.follow import Progress, run_jobs
from pipelines.outage import Outage, is_outage
from streams.admin import ensure_topics
from streams.dead_letters import read_dead_letters
from tests.conftest import own_topics
from tests.pipelines.helpers import expected_memories, lake_memories, produce, pure_fold, with_root
from tests.tcp_proxy import TcpProxy
from tests.waiting import until

_DOWN = BrokerUnavailableError("10.0.0.7:9092", "end offsets of 't': KafkaTimeoutError: timed out")


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_waits_double_from_the_first_up_to_the_longest(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    outage = Outage(first_wait_s=0.5, max_wait_s=3.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="pipelines.outage"):
        waits = [outage.failed(_DOWN) for _ in range(6)]
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{_DOWN}; waiting for it and trying again"]  # said once, when it began


def test_the_end_of_an_outage_says_how_long_it_lasted_and_the_next_starts_afresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    outage = Outage(first_wait_s=0.5, max_wait_s=30.0, clock=clock)
    assert outage.over() is None  # no outage, nothing to say
    outage.failed(_DOWN)
    clock.now += 12.0
    outage.failed(_DOWN)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipelines.outage"):
        assert outage.over() == 12.0
    assert caplog.messages == ["Kafka answers again after 12 s and 2 failed tries; going on"]
    assert outage.failed(_DOWN) == 0.5


def test_the_end_of_an_outage_names_what_was_away(caplog: pytest.LogCaptureFixture) -> None:
    store_down = StoreUnavailableError("events", "OSError: Generic S3 error: ... Connection refused")
    outage = Outage(first_wait_s=0.5, max_wait_s=30.0, clock=_Clock())
    with caplog.at_level(logging.WARNING, logger="pipelines.outage"):
        outage.failed(store_down)
        outage.over()
        for error in (store_down, _DOWN, store_down):
            outage.failed(error)
        outage.over()
    ended = [m for m in caplog.messages if "again after" in m]
    assert ended == [
        "The lake's store answers again after 0 s and 1 failed tries; going on",
        "The lake's store and Kafka answer again after 0 s and 3 failed tries; going on",
    ]
    assert outage.away == []


@pytest.mark.parametrize(
    ("error", "waited_out"),
    [
        (_DOWN, True),
        (WriteNotConfirmedError("e-1", "KafkaTimeoutError: batch expired", retriable=True), True),
        (WriteNotConfirmedError("e-1", "MessageSizeTooLargeError: too large", retriable=False), False),
        (StoreUnavailableError("events", "OSError: Generic S3 error: ... Connection refused"), True),
        (LakeError("memories", "tables still behind events version 7"), False),
    ],
)
def test_only_kafka_or_the_store_being_away_is_an_outage(
    error: BrokerUnavailableError | LakeError, waited_out: bool
) -> None:
    assert is_outage(error) is waited_out


def _private_topics(broker: LocalBroker) -> KafkaSettings:
    suffix = uuid.uuid4().hex[:10]
    kafka = KafkaSettings(
        bootstrap=broker.bootstrap,
        events_topic=f"outage.events.{suffix}",
        dlq_topic=f"outage.dlq.{suffix}",
        partitions=3,
        request_timeout_ms=2000,  # a call to a stopped broker fails after 2 s, not 30
    )
    ensure_topics(kafka)
    return kafka


def _settings(kafka: KafkaSettings, tmp_path: Path, **pipelines: float) -> Settings:
    waits = {"follow_interval_s": 0.1, "outage_backoff_max_s": 1.0, "read_timeout_s": 3.0}
    return Settings(kafka=kafka, lake={"root": str(tmp_path / "lake")}, pipelines={**waits, **pipelines})


class _Follower:
    """`run_jobs(..., follow=True)` in a thread: what it reported, and what it raised."""

    def __init__(self, settings: Settings) -> None:
        self.reports: list[Progress] = []
        self.failed: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, args=(settings,), name="follower")

    def _follow(self, settings: Settings) -> None:
        try:
            run_jobs(settings, follow=True, stop=self._stop, report=lambda p: self.reports.append(replace(p)))
        except BaseException as e:
            self.failed.append(e)
            raise

    def reported(self, condition: Callable[[Progress], bool]) -> bool:
        """Whether its last report meets `condition`; true at once when it failed, to stop waiting."""
        return bool(self.failed) or (bool(self.reports) and condition(self.reports[-1]))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> bool:
        """Ask it to stop; whether it did."""
        self._stop.set()
        self._thread.join(timeout=120)
        return not self._thread.is_alive()


@contextmanager
def _following(settings: Settings, broker: LocalBroker) -> Iterator[_Follower]:
    """A follower for the block; after it, stopped, and the broker running again whatever happened."""
    follower = _Follower(settings)
    follower.start()
    try:
        yield follower
    finally:
        stopped = follower.stop()
        broker.up()  # left running for the next test
    assert stopped
    assert not follower.failed


@pytest.mark.integration
@pytest.mark.usefixtures("quiet_kafka_client")
def test_a_follower_waits_out_a_broker_restart_and_the_lake_stays_exact(
    private_broker: LocalBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kafka = _private_topics(private_broker)
    settings = _settings(kafka, tmp_path, batch_max_events=150)
    events = generate(3000, cubes=10, seed=5)
    bad = invalid_records(6)
    produce(kafka, events[:1500], raw=bad[:3])
    caplog.set_level(logging.INFO, logger="pipelines.outage")
    with _following(settings, private_broker) as follower:
        until(lambda: follower.reported(lambda p: p.batches >= 3), timeout_s=120)
        private_broker.down()  # while the follower works through its backlog
        # A one-shot run (on a lake of its own: the follower holds this one's lease) fails
        # at once, with the error naming the broker.
        with pytest.raises(
            BrokerUnavailableError, match=f"Kafka at {private_broker.bootstrap} is unavailable"
        ):
            run_jobs(with_root(settings, str(tmp_path / "one-shot")))
        until(lambda: follower.failed or "waiting for it and trying again" in caplog.text, timeout_s=60)
        assert not follower.failed
        private_broker.up()
        produce(kafka, events[1500:], raw=bad[3:])
        until(lambda: follower.reported(lambda p: p.landed >= 3000 and p.dead_letters >= 6), timeout_s=180)
        until(lambda: follower.reported(lambda p: p.watermark == p.events_version), timeout_s=60)

    last = follower.reports[-1]
    assert last.outages >= 1
    assert "waited out" in last.line()
    assert "Kafka answers again after" in caplog.text
    # Nothing lost, nothing twice: each event landed once, and the memories are the pure fold's.
    assert (last.landed, last.dead_letters) == (3000, 6)
    lake = Lake(settings.lake)
    assert lake.table("events").to_pyarrow_dataset().count_rows() == 3000
    assert lake_memories(lake) == expected_memories(pure_fold(events))
    # Dead letters are at least once (a send the broker took but did not confirm is sent again).
    assert {letter.original for letter in read_dead_letters(kafka)} == {value for _, value in bad}


@pytest.mark.integration
@pytest.mark.usefixtures("quiet_kafka_client")
def test_a_follower_started_while_kafka_is_away_waits_for_it(
    private_broker: LocalBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A follower (re)started during an outage does not exit: it starts once Kafka is back."""
    kafka = _private_topics(private_broker)
    settings = _settings(kafka, tmp_path)
    events = generate(300, cubes=4, seed=9)
    produce(kafka, events)
    private_broker.down()
    caplog.set_level(logging.INFO, logger="pipelines.outage")
    with _following(settings, private_broker) as follower:
        until(lambda: follower.failed or "still unavailable" in caplog.text, timeout_s=60)
        assert not follower.failed
        assert not follower.reports
        private_broker.up()
        until(lambda: follower.reported(lambda p: p.landed == 300), timeout_s=120)
    assert follower.reports[-1].outages == 1
    assert lake_memories(Lake(settings.lake)) == expected_memories(pure_fold(events))


@pytest.mark.usefixtures("quiet_kafka_client")
def test_a_one_shot_run_with_kafka_away_exits_1_naming_the_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MEMLAKE_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")
    monkeypatch.setenv("MEMLAKE_KAFKA_REQUEST_TIMEOUT_MS", "1000")
    monkeypatch.setenv("MEMLAKE_LAKE_ROOT", str(tmp_path / "lake"))
    assert main(["materialize"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"memlake: error: Kafka at 127.0.0.1:{port} is unavailable: ")
    assert len(err.strip().splitlines()) == 1  # one line, no traceback


@pytest.mark.integration
def test_a_follower_waits_out_the_store_being_away_and_the_lake_stays_exact(
    broker: LocalBroker,
    cut_store: tuple[TcpProxy, LakeSettings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy, lake_settings = cut_store
    kafka = own_topics(broker, partitions=3)
    waits = {"follow_interval_s": 0.1, "outage_backoff_max_s": 1.0, "batch_max_events": 150}
    settings = Settings(kafka=kafka, lake=lake_settings, pipelines=waits)
    events = generate(1200, cubes=6, seed=17)
    produce(kafka, events[:600])
    caplog.set_level(logging.INFO, logger="pipelines.outage")
    follower = _Follower(settings)
    follower.start()
    try:
        until(lambda: follower.reported(lambda p: p.batches >= 2), timeout_s=120)
        proxy.down()  # while the follower works through its backlog
        # A one-shot run fails at once (at the writer lease, which lives in the lake), in one line.
        with pytest.raises(StoreUnavailableError, match="Connection refused") as raised:
            run_jobs(settings)
        assert "\n" not in str(raised.value)
        produce(kafka, events[600:])  # Kafka is up: events go on arriving
        until(lambda: follower.failed or "still unavailable" in caplog.text, timeout_s=60)
        assert not follower.failed
        proxy.up()
        until(lambda: follower.reported(lambda p: p.landed >= 1200), timeout_s=180)
        until(lambda: follower.reported(lambda p: p.watermark == p.events_version), timeout_s=60)
    finally:
        stopped = follower.stop()
        proxy.up()
    assert stopped
    assert not follower.failed
    last = follower.reports[-1]
    assert last.outages >= 1
    assert "The lake's store answers again after" in caplog.text
    # Nothing lost, nothing twice: each event landed once, and the memories are the pure fold's.
    assert last.landed == 1200
    lake = Lake(settings.lake)
    assert lake.table("events").to_pyarrow_dataset().count_rows() == 1200
    assert lake_memories(lake) == expected_memories(pure_fold(events))
