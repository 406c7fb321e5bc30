"""Bad records planted on the real topic go to the dead-letter topic with a reason; reading goes on."""

from __future__ import annotations

import json

import pytest

from memlake.events import serialize_event
from memlake.settings import KafkaSettings
from streams.dead_letters import DeadLetterWriter, read_dead_letters
from streams.producer import EventProducer
from streams.reader import plan_ranges, read_range
from streams.triage import triage
from tests.memlake import builders as b

pytestmark = pytest.mark.integration


def test_planted_bad_records_become_dead_letters_and_reading_continues(kafka: KafkaSettings) -> None:
    clock = b.Clock()
    good = [b.created(at=clock()), b.added("m1", at=clock()), b.added("m2", at=clock())]
    bad_priority = json.loads(serialize_event(b.added("m3", at=clock())))
    bad_priority["payload"]["priority"] = 42
    from_the_future = json.loads(serialize_event(b.added("m4", at=clock())))
    from_the_future["schema"] = 9
    key = b.CUBE.encode()
    with EventProducer(kafka) as producer:
        producer.send(good[0])
        for value in (
            b"\x00\x01 definitely not json",
            json.dumps(bad_priority).encode(),
            b'{"type": "memory.added"}',
            json.dumps(from_the_future).encode(),
        ):
            producer.send_raw(key, value).get(timeout=30)
        producer.send(good[1:])
    records = [
        r for span in plan_ranges(kafka, kafka.events_topic, after={}) for r in read_range(kafka, span)
    ]
    events, letters = triage(records)
    assert [e for _, e in events] == good
    assert len(letters) == 4
    with DeadLetterWriter(kafka) as writer:
        assert writer.send(letters) == 4
    stored = read_dead_letters(kafka)
    assert stored == letters
    partition = records[0].partition
    assert [(d.source_topic, d.source_partition, d.source_offset) for d in stored] == [
        (kafka.events_topic, partition, offset) for offset in (1, 2, 3, 4)
    ]
    reasons = [d.reason for d in stored]
    assert "not valid JSON" in reasons[0]
    assert "payload.priority" in reasons[1]
    assert "event_id: Field required" in reasons[2]
    assert "unsupported schema version 9" in reasons[3]
    assert stored[1].event_id == bad_priority["event_id"]
    assert stored[0].original == b"\x00\x01 definitely not json"
    assert all(d.stage == "land" for d in stored)
