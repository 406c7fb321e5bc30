"""The ingest line formats: full events and compact lines, with reasons that name the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from memlake.errors import InvalidEventError
from memlake.events import (
    CubeCreated,
    CubeRolledBack,
    MemoryAccessed,
    MemoryAdded,
    MemoryDeleted,
    MemoryUpdated,
    serialize_event,
)
from memlake.model import Actor, ActorKind, Content
from streams.ingest import COMPACT_OPS, IngestProblem, IngestReport, parse_line
from tests.memlake import builders as b

ACTOR = Actor(kind=ActorKind.SERVICE, id="importer")


def _parse(line: dict[str, Any] | str | bytes) -> Any:
    raw = line if isinstance(line, bytes) else (line if isinstance(line, str) else json.dumps(line)).encode()
    return parse_line(raw, actor=ACTOR, product="notes-app")


def _problem_fields(error: InvalidEventError) -> list[str]:
    return [p.field for p in error.problems]


def test_a_full_event_line_is_taken_as_it_is() -> None:
    event = b.added("m1", tags=["x"])
    assert _parse(serialize_event(event)) == event


def test_a_full_v1_event_line_is_upcast() -> None:
    line = {
        "schema": 1,
        "event_id": "01890a5d-ac96-774b-bcce-b302099a8057",
        "type": "memory.added",
        "cube_id": "c",
        "memory_id": "m",
        "occurred_at": "2025-01-01T00:00:00Z",
        "actor": "user:alice",
        "payload": {"text": "old style"},
    }
    event = _parse(line)
    assert isinstance(event, MemoryAdded)
    assert event.payload.content == Content(text="old style")


def test_compact_add_fills_the_envelope() -> None:
    event = _parse(
        {
            "op": "add",
            "cube": "alice",
            "text": "likes tea",
            "tags": ["pref"],
            "ref": "dialogue-7#3",
            "priority": 0.9,
        }
    )
    assert isinstance(event, MemoryAdded)
    assert event.cube_id == "alice"
    assert event.memory_id is not None
    assert event.memory_id.startswith("m-")
    assert event.actor == ACTOR
    assert event.source is not None
    assert (event.source.product, event.source.ref) == ("notes-app", "dialogue-7#3")
    assert event.payload.content == Content(text="likes tea")
    assert event.payload.priority == 0.9
    assert event.event_id.version == 7


def test_compact_lines_can_pin_ids_actor_and_time_for_repeatable_imports() -> None:
    line = {
        "op": "add",
        "cube": "alice",
        "text": "t",
        "memory_id": "m-1",
        "event_id": "01890a5d-ac96-774b-bcce-b302099a8057",
        "actor": "user:alice",
        "at": "2026-03-01T10:00:00+01:00",
        "subject": "alice",
        "expected_version": 4,
    }
    first, second = _parse(line), _parse(line)
    assert first == second
    assert first.actor.principal == "user:alice"
    assert first.occurred_at.isoformat() == "2026-03-01T09:00:00+00:00"
    assert first.payload.subject_id == "alice"
    assert first.expected_version == 4


@pytest.mark.parametrize(
    ("line", "cls"),
    [
        (
            {
                "op": "create_cube",
                "cube": "c",
                "name": "C",
                "readers": ["user:b"],
                "policy": {"ttl_seconds": 9},
            },
            CubeCreated,
        ),
        ({"op": "update", "cube": "c", "memory_id": "m", "text": "new"}, MemoryUpdated),
        ({"op": "delete", "cube": "c", "memory_id": "m", "reason": "wrong"}, MemoryDeleted),
        ({"op": "access", "cube": "c", "memory_ids": ["m"], "request_kind": "chat"}, MemoryAccessed),
        ({"op": "rollback", "cube": "c", "to_version": 3}, CubeRolledBack),
    ],
)
def test_every_compact_op_makes_its_event(line: dict[str, Any], cls: type) -> None:
    assert isinstance(_parse(line), cls)


def test_compact_ops_cover_the_documented_table() -> None:
    assert set(COMPACT_OPS) == {
        "create_cube",
        "add",
        "update",
        "delete",
        "access",
        "rollback",
        "policy",
        "acl",
    }


@pytest.mark.parametrize(
    ("line", "fields", "reason"),
    [
        (b"{oops", ["<line>"], "not valid JSON"),
        (b"[1]", ["<line>"], "must be a JSON object"),
        ({"cube": "c"}, ["<line>"], "neither a full event"),
        ({"op": "forget", "cube": "c"}, ["op"], "unknown op 'forget'"),
        ({"op": "add", "text": "t"}, ["cube"], "cube: required"),
        ({"op": "add", "cube": "c", "text": "t", "colour": "red"}, ["colour"], "not a field of op 'add'"),
        ({"op": "add", "cube": "c", "text": "   "}, ["text"], "must not be blank"),
        ({"op": "add", "cube": "c", "text": "t", "priority": 7}, ["priority"], "less than or equal to 1"),
        ({"op": "add", "cube": "has space", "text": "t"}, ["cube"], "pattern"),
        ({"op": "add", "cube": "c", "text": "t", "at": "yesterday"}, ["at"], "datetime"),
        ({"op": "add", "cube": "c", "text": "t", "actor": "robot:x"}, ["actor"], "robot"),
        ({"op": "add", "cube": "c", "text": "t", "actor": "user:has space"}, ["actor"], "pattern"),
        ({"op": "update", "cube": "c", "memory_id": "m"}, ["payload"], "at least one field"),
        ({"op": "rollback", "cube": "c", "to_version": 0}, ["to_version"], "greater than or equal to 1"),
        (
            {"type": "memory.added", "cube_id": "c"},
            ["event_id", "occurred_at", "actor", "payload"],
            "invalid memory.added event",
        ),
    ],
)
def test_invalid_lines_say_which_field_and_why(line: Any, fields: list[str], reason: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        _parse(line)
    found = _problem_fields(info.value)
    assert found == fields
    assert reason in info.value.reason


def test_report_lists_problems_with_line_numbers() -> None:
    report = IngestReport(
        path="x.jsonl", lines=3, sent=2, problems=[IngestProblem(2, "invalid event: cube: required")]
    )
    assert not report.ok
    assert str(report).splitlines() == [
        "x.jsonl: 3 lines, 2 events sent, 1 refused",
        "  line 2: invalid event: cube: required",
    ]
