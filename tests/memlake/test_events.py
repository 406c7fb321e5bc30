"""Events: validation that names the field, exact round trips, upcasting and limits."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from memlake.errors import InvalidEventError, UnknownSchemaError
from memlake.events import (
    MAX_EVENT_BYTES,
    SCHEMA_VERSION,
    CubeCreated,
    EventType,
    MemoryAdded,
    MemoryMerged,
    MemoryUpdated,
    Transformation,
    event_to_dict,
    new_event,
    parse_event,
    parse_event_dict,
    serialize_event,
)
from memlake.model import ActorKind, Content, MemoryKind
from tests.memlake import builders as b


def _raw_added(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema": 2,
        "event_id": "01890a5d-ac96-774b-bcce-b302099a8057",
        "type": "memory.added",
        "cube_id": "cube-1",
        "memory_id": "m1",
        "occurred_at": "2026-01-01T12:00:00Z",
        "actor": {"kind": "user", "id": "alice"},
        "payload": {"content": {"text": "likes tea"}},
    }
    data.update(overrides)
    return data


def _fields(error: InvalidEventError) -> list[str]:
    return [p.field for p in error.problems]


def test_every_event_type_round_trips_exactly() -> None:
    events = [
        b.created(subject_id="alice"),
        b.added("m1", tags=["pref"], priority=0.9, ttl_seconds=60),
        b.updated("m1", content={"text": "likes green tea"}),
        b.deleted("m1"),
        b.archived("m1"),
        b.expired("m1"),
        b.accessed("m1", "m2"),
        b.merged("m3", ["m1", "m2"]),
        b.transformed("a1", [("m1", 2)]),
        b.policy_changed(ttl_seconds=10, encrypt_content=True),
        b.acl_changed(writers=("user:w",)),
        b.rolled_back(3),
        b.erased("alice"),
    ]
    assert {e.type for e in events} == {t.value for t in EventType}
    for event in events:
        raw = serialize_event(event)
        again = parse_event(raw)
        assert again == event
        assert serialize_event(again) == raw


def test_serialisation_is_canonical_json() -> None:
    event = b.added("m1")
    raw = serialize_event(event)
    data = json.loads(raw)
    # Compact UTF-8, fields in the order the schema declares them.
    assert raw == json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    assert list(data)[:3] == ["type", "schema", "event_id"]
    assert data["schema"] == SCHEMA_VERSION
    assert "memory_id" in data
    assert "causation_id" not in data  # None fields are left out
    assert event_to_dict(event) == data


def test_new_event_gets_a_uuid7_and_validates() -> None:
    event = new_event(
        MemoryAdded,
        cube_id="c",
        actor=b.OWNER,
        memory_id="m",
        payload={"content": {"text": "x"}},
    )
    assert event.event_id.version == 7
    with pytest.raises(InvalidEventError) as info:
        new_event(MemoryAdded, cube_id="c", actor=b.OWNER, memory_id="m", payload={})
    assert _fields(info.value) == ["payload"]
    assert "needs 'content'" in str(info.value)


def test_a_v1_event_is_upcast_on_read() -> None:
    v1 = {
        "schema": 1,
        "event_id": "01890a5d-ac96-774b-bcce-b302099a8057",
        "type": "memory.added",
        "cube_id": "cube-1",
        "memory_id": "m1",
        "occurred_at": "2025-06-01T08:00:00+00:00",
        "actor": "agent:importer",
        "payload": {"text": "was written before content could be sealed", "tags": ["legacy"]},
    }
    event = parse_event(json.dumps(v1))
    assert isinstance(event, MemoryAdded)
    assert event.schema_version == SCHEMA_VERSION
    assert event.actor.kind is ActorKind.AGENT
    assert event.actor.id == "importer"
    assert event.payload.content == Content(text="was written before content could be sealed")
    assert event.payload.tags == ("legacy",)
    assert json.loads(serialize_event(event))["schema"] == SCHEMA_VERSION


def test_an_event_without_schema_is_read_as_v1() -> None:
    v1 = _raw_added(actor="alice", payload={"text": "t"})
    del v1["schema"]
    event = parse_event_dict(v1)
    assert event.actor.principal == "user:alice"


def test_upcasting_a_v1_merge_moves_text_into_content() -> None:
    v1 = _raw_added(
        schema=1, type="memory.merged", actor="user:alice", payload={"sources": ["a", "b"], "text": "ab"}
    )
    event = parse_event_dict(v1)
    assert isinstance(event, MemoryMerged)
    assert event.payload.content.text == "ab"


@pytest.mark.parametrize("schema", [3, 99, 0, -1])
def test_an_unknown_schema_version_is_refused(schema: int) -> None:
    raw = json.dumps(_raw_added(schema=schema)).encode()
    with pytest.raises(UnknownSchemaError) as info:
        parse_event(raw)
    assert _fields(info.value) == ["schema"]
    assert f"unsupported schema version {schema}" in str(info.value)
    assert info.value.raw == raw


@pytest.mark.parametrize("schema", ["2", 2.0, True, None])
def test_a_schema_that_is_not_an_integer_is_refused(schema: object) -> None:
    with pytest.raises(InvalidEventError) as info:
        parse_event_dict(_raw_added(schema=schema))
    assert _fields(info.value) == ["schema"]


def test_an_oversized_event_is_refused_before_parsing() -> None:
    raw = json.dumps(_raw_added(payload={"content": {"text": "x" * MAX_EVENT_BYTES}})).encode()
    with pytest.raises(InvalidEventError) as info:
        parse_event(raw)
    assert f"over the limit of {MAX_EVENT_BYTES}" in str(info.value)
    assert info.value.raw == raw


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\xff\xfe not utf-8", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"memory.added"', "must be a JSON object"),
    ],
)
def test_malformed_bytes_are_refused_with_a_reason(raw: bytes, problem: str) -> None:
    with pytest.raises(InvalidEventError, match=problem) as info:
        parse_event(raw)
    assert _fields(info.value) == ["<event>"]
    assert info.value.raw == raw


def test_an_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(InvalidEventError) as info:
        parse_event_dict(_raw_added(type="memory.forgotten"))
    assert _fields(info.value) == ["type"]
    assert "memory.forgotten" in str(info.value)
    assert "memory.added" in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "field", "problem"),
    [
        ({"memory_id": None}, "<event>", "'memory_id' is required"),
        ({"cube_id": "no spaces allowed"}, "cube_id", "pattern"),
        ({"event_id": "not-a-uuid"}, "event_id", "UUID"),
        ({"occurred_at": "2026-01-01T12:00:00"}, "occurred_at", "timezone"),
        ({"actor": {"kind": "robot", "id": "r"}}, "actor.kind", "user"),
        ({"payload": {"content": {"text": "x"}, "priority": 2}}, "payload.priority", "less than or equal"),
        ({"payload": {"content": {"text": "x"}, "colour": "red"}}, "payload.colour", "Extra inputs"),
        ({"payload": {"content": {}}}, "payload.content", "exactly one of"),
        ({"payload": {"kind": "parametric", "content": {"text": "x"}}}, "payload", "needs 'artifact'"),
        ({"expected_version": -1}, "expected_version", "greater than or equal"),
        ({"surprise": 1}, "surprise", "Extra inputs"),
    ],
)
def test_validation_names_the_field_and_the_problem(
    overrides: dict[str, Any], field: str, problem: str
) -> None:
    data = {k: v for k, v in _raw_added(**overrides).items() if v is not None}
    with pytest.raises(InvalidEventError) as info:
        parse_event_dict(data)
    assert field in _fields(info.value), info.value.problems
    assert problem in str(info.value)
    assert info.value.event_type == "memory.added"
    assert str(info.value).startswith("invalid memory.added event: ")


def test_cube_events_must_not_name_a_memory() -> None:
    data = {
        "schema": 2,
        "event_id": str(uuid.uuid4()),
        "type": "cube.created",
        "cube_id": "c",
        "memory_id": "m1",
        "occurred_at": "2026-01-01T00:00:00Z",
        "actor": {"kind": "user", "id": "a"},
        "payload": {"name": "n"},
    }
    with pytest.raises(InvalidEventError, match="'memory_id' must be empty"):
        parse_event_dict(data)


def test_an_update_must_change_something() -> None:
    with pytest.raises(InvalidEventError, match="at least one field"):
        new_event(MemoryUpdated, cube_id="c", actor=b.OWNER, memory_id="m", payload={})


def test_transformations_need_the_output_of_their_target_kind() -> None:
    assert Transformation.PLAINTEXT_TO_ACTIVATION.target is MemoryKind.ACTIVATION
    assert Transformation.PARAMETRIC_TO_PLAINTEXT.target is MemoryKind.PLAINTEXT
    with pytest.raises(InvalidEventError, match="parametric_to_plaintext needs 'content'"):
        parse_event_dict(
            _raw_added(
                type="memory.transformed",
                payload={
                    "transformation": "parametric_to_plaintext",
                    "sources": [{"memory_id": "a1", "version": 1}],
                },
            )
        )


def test_event_type_property_matches_the_class() -> None:
    event = b.created()
    assert isinstance(event, CubeCreated)
    assert event.event_type is EventType.CUBE_CREATED


def test_the_event_key_is_the_id_as_text_and_changes_nothing_else() -> None:
    raw = json.dumps(_raw_added()).encode()
    keyed, plain = parse_event(raw), parse_event(raw)
    assert keyed.event_key == "01890a5d-ac96-774b-bcce-b302099a8057" == str(keyed.event_id)
    # Cached on the instance, yet left out of equality, hashing and the serialised form.
    assert keyed == plain
    assert plain == keyed
    assert hash(keyed) == hash(plain)
    assert serialize_event(keyed) == serialize_event(plain)


def test_a_copy_with_a_new_id_has_that_id_as_its_key() -> None:
    event = parse_event(json.dumps(_raw_added()).encode())
    assert event.event_key == "01890a5d-ac96-774b-bcce-b302099a8057"
    other = uuid.UUID("01890a5d-ac96-774b-bcce-b302099a8058")
    copy = event.model_copy(update={"event_id": other})
    assert copy.event_key == str(other)
    assert event.model_copy().event_key == event.event_key
