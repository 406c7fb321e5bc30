"""The producer against the real broker: order per cube, spread over partitions, duplicates."""

from __future__ import annotations

import pytest

from memlake.errors import WriteNotConfirmedError
from memlake.events import serialize_event
from memlake.fold import project
from memlake.settings import KafkaSettings
from streams.admin import TopicSpec, ensure_topics
from streams.producer import EventProducer
from tests.memlake import builders as b
from tests.streams.log_helpers import read_all, read_events

pytestmark = pytest.mark.integration


def test_one_cubes_events_come_back_in_the_order_written(kafka: KafkaSettings) -> None:
    clock = b.Clock()
    events = [b.created(at=clock())] + [b.added(f"m{i:03d}", f"fact {i}", at=clock()) for i in range(300)]
    with EventProducer(kafka) as producer:
        # Several sends in flight at once (one big batch, then single sends): order must hold.
        deliveries = producer.send(events[:200])
        for event in events[200:]:
            deliveries += producer.send(event)
    assert len({d.partition for d in deliveries}) == 1
    offsets = [d.offset for d in deliveries]
    assert offsets == sorted(offsets)
    assert len(set(offsets)) == len(offsets)
    logged = read_events(kafka)
    assert [e.event_id for _, e in logged] == [e.event_id for e in events]
    assert project(e for _, e in logged).version == 301


def test_different_cubes_spread_over_partitions_each_in_order(kafka: KafkaSettings) -> None:
    cubes = [f"cube-{i:02d}" for i in range(24)]
    written: dict[str, list[str]] = {}
    events = []
    for round_ in range(5):
        for cube in cubes:
            event = b.added(f"m{round_}").model_copy(update={"cube_id": cube})
            events.append(event)
            written.setdefault(cube, []).append(str(event.event_id))
    with EventProducer(kafka) as producer:
        deliveries = producer.send_many(events, chunk=37)
    partition_of = {}
    for delivery in deliveries:
        assert partition_of.setdefault(delivery.cube_id, delivery.partition) == delivery.partition
    # 24 keys over 6 partitions: the murmur2 partitioner uses most of them.
    assert len(set(partition_of.values())) >= 4
    read_back: dict[str, list[str]] = {}
    for record, event in read_events(kafka):
        assert record.key == event.cube_id.encode()
        assert record.partition == partition_of[event.cube_id]
        read_back.setdefault(event.cube_id, []).append(str(event.event_id))
    assert read_back == written


def test_a_duplicate_event_id_sent_on_purpose_is_harmless_downstream(kafka: KafkaSettings) -> None:
    clock = b.Clock()
    created, add = b.created(at=clock()), b.added("m1", at=clock())
    access = b.accessed("m1", at=clock())
    with EventProducer(kafka) as producer:
        producer.send([created, add, access])
        # A client that retried by hand after a timeout: the same events again, later.
        producer.send([b.updated("m1", priority=0.9, at=clock()), add, access])
    records = read_all(kafka)
    assert len(records) == 6  # the log keeps what was sent: the duplicates are there ...
    assert [r.value for r in records].count(serialize_event(add)) == 2
    state = project(e for _, e in read_events(kafka))
    # ... and the fold ignores them: one memory, one access, version 4 not 6.
    assert state.version == 4
    assert len(state.memories) == 1
    assert state.memories["m1"].indicators.access_count == 1
    assert state.memories["m1"].governance.priority == 0.9


def test_a_write_the_broker_refuses_is_a_clear_error_naming_the_event(kafka: KafkaSettings) -> None:
    # A topic that takes record batches of at most 600 bytes: the broker answers the send
    # with an error instead of an acknowledgement.
    small = kafka.model_copy(update={"events_topic": f"{kafka.events_topic}.small"})
    ensure_topics(small, [TopicSpec(small.events_topic, 1, config={"max.message.bytes": "600"})])
    fits, too_big = b.created(), b.added("m1", "x" * 600)
    with EventProducer(small) as producer:
        (delivery,) = producer.send(fits)
        assert (delivery.partition, delivery.offset) == (0, 0)
        with pytest.raises(WriteNotConfirmedError) as raised:
            producer.send(too_big)
    assert raised.value.event_id == str(too_big.event_id)
    assert str(too_big.event_id) in str(raised.value)
    assert "MessageSizeTooLarge" in str(raised.value)
    assert [r.value for r in read_all(small)] == [serialize_event(fits)]
