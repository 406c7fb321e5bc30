"""Triage of raw log records into events and dead letters (records built by hand: pure logic)."""

from __future__ import annotations

import json

from memlake.events import serialize_event
from streams.dead_letters import DeadLetter
from streams.reader import Record
from streams.triage import triage
from tests.memlake import builders as b


def _record(offset: int, value: bytes | None, key: bytes | None = b"cube-1") -> Record:
    return Record(topic="t", partition=2, offset=offset, key=key, value=value, timestamp_ms=0)


def test_valid_records_become_events_in_order_and_bad_ones_dead_letters() -> None:
    good1, good2 = b.created(), b.added("m1")
    invalid = json.loads(serialize_event(b.added("m2")))
    invalid["payload"]["priority"] = 5
    records = [
        _record(10, serialize_event(good1)),
        _record(11, b"\x00\xffnot json"),
        _record(12, json.dumps(invalid).encode()),
        _record(13, None),
        _record(14, serialize_event(good2)),
        _record(15, serialize_event(b.added("m3")), key=b"cube-2"),
    ]
    events, letters = triage(records)
    assert [(r.offset, e) for r, e in events] == [(10, good1), (14, good2)]
    assert [letter.source_offset for letter in letters] == [11, 12, 13, 15]
    assert all(letter.stage == "land" for letter in letters)
    assert all(letter.source_topic == "t" and letter.source_partition == 2 for letter in letters)
    assert "not valid JSON" in letters[0].reason
    assert letters[0].original == b"\x00\xffnot json"
    assert "payload.priority" in letters[1].reason
    assert letters[1].event_id == invalid["event_id"]
    assert "empty record" in letters[2].reason
    assert "is not the event's cube_id" in letters[3].reason


def test_a_record_without_key_is_accepted_and_the_stage_is_named() -> None:
    event = b.created()
    events, letters = triage([_record(0, serialize_event(event), key=None)], stage="materialize")
    assert events[0][1] == event
    assert letters == []
    _, bad = triage([_record(1, b"{}")], stage="materialize")
    assert bad[0].stage == "materialize"


def test_dead_letters_round_trip_through_bytes() -> None:
    _, (letter,) = triage([_record(7, b"\xfe\xff")])
    assert DeadLetter.from_bytes(letter.to_bytes()) == letter
