"""The bounded reader against the real broker: planned ranges, exact reads, lag per partition."""

from __future__ import annotations

import pytest

from memlake.events import parse_event
from memlake.settings import KafkaSettings
from streams.producer import EventProducer
from streams.reader import OffsetRange, consumer_lag, plan_ranges, read_range
from tests.memlake import builders as b

pytestmark = pytest.mark.integration


def test_a_planned_range_starts_after_the_watermark_and_ignores_later_writes(kafka: KafkaSettings) -> None:
    clock = b.Clock()
    topic = kafka.events_topic
    with EventProducer(kafka) as producer:
        first = producer.send([b.created(at=clock())] + [b.added(f"m{i}", at=clock()) for i in range(9)])
        partition = first[0].partition
        # A job that applied offsets 0..3 of this partition reads from 4 to the end as it is now.
        (span,) = plan_ranges(kafka, topic, after={partition: 3})
        assert span == OffsetRange(topic, partition, 4, 10)
        (capped,) = plan_ranges(kafka, topic, after={partition: 3}, max_per_partition=4)
        assert capped == OffsetRange(topic, partition, 4, 8)
        assert plan_ranges(kafka, topic, after={partition: 9}) == []  # nothing new
        later = producer.send([b.added(f"n{i}", at=clock()) for i in range(5)])
    records = list(read_range(kafka, span))
    assert [r.offset for r in records] == list(range(4, 10))  # the writes after planning are not read
    assert [str(parse_event(r.value or b"").event_id) for r in records] == [d.event_id for d in first[4:]]
    assert [r.offset for r in read_range(kafka, capped)] == [4, 5, 6, 7]
    assert later[-1].offset == 14
    lag = consumer_lag(kafka, topic, applied={partition: 3})
    assert lag == {p: (11 if p == partition else 0) for p in range(kafka.partitions)}
    assert consumer_lag(kafka, topic, applied={})[partition] == 15
