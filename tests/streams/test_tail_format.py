"""Readable lines for events and dead letters (pure formatting)."""

from __future__ import annotations

from pathlib import Path

from memlake.errors import FieldProblem, InvalidEventError
from memlake.events import serialize_event
from streams.dead_letters import DeadLetter
from streams.reader import Record
from streams.sealing import LocalKeyStore, Sealer
from streams.tail import Tailed, format_dead_letter, format_event, format_tailed
from tests.memlake import builders as b


def test_memory_added_reads_like_a_sentence() -> None:
    line = format_event(b.added("m1", "Alice prefers green tea", tags=["preference"]))
    assert line == (
        "2026-01-01 12:00:00  cube-1  memory.added m1  by user:alice  "
        "[fact] 'Alice prefers green tea' #preference"
    )


def test_every_event_type_has_a_readable_detail() -> None:
    expected = {
        "cube.created": 'name="Alice\'s notes" owner=user:alice',
        "cube.policy_changed": "policy ttl_seconds=60",
        "cube.acl_changed": "owner=user:alice writers=['user:w'] readers=[]",
        "cube.rolled_back": "to version 3",
        "memory.updated": "priority=0.2",
        "memory.deleted": "memory.deleted m1  by user:alice",
        "memory.accessed": "search returned m1, m2",
        "memory.merged": "from m1, m2: 'merged'",
        "memory.transformed": "plaintext_to_parametric of m1@v2 -> file:///adapters/a1",
        "subject.erased": "subject bob erased",
        "memory.expired": "(ttl)",
        "memory.archived": "(decay)",
    }
    events = [
        b.created(),
        b.policy_changed(ttl_seconds=60),
        b.acl_changed(writers=("user:w",)),
        b.rolled_back(3),
        b.updated("m1", priority=0.2),
        b.deleted("m1"),
        b.accessed("m1", "m2"),
        b.merged("m3", ["m1", "m2"]),
        b.transformed("a1", [("m1", 2)]),
        b.erased("bob"),
        b.expired("m1"),
        b.archived("m1"),
    ]
    for event in events:
        assert expected[event.type] in format_event(event), event.type


def test_long_text_is_shortened_to_one_line() -> None:
    line = format_event(b.added("m1", "word\n" * 100))
    assert "\n" not in line
    assert line.endswith("…'")


def test_sealed_content_is_hidden_opened_or_reported_erased(tmp_path: Path) -> None:
    sealer = Sealer(LocalKeyStore(tmp_path))
    sealed = sealer.seal("bob's address", "bob")
    event = b.add_sealed("m1", sealed.model_dump(mode="json"))
    assert "<sealed for bob>" in format_event(event)
    assert '"bob\'s address" (sealed for bob)' in format_event(event, opener=sealer.open)
    sealer.keys.destroy("bob")
    assert "<erased: the key of bob was destroyed>" in format_event(event, opener=sealer.open)


def test_tailed_lines_show_where_and_invalid_records() -> None:
    record = Record("t", 3, 41, b"cube-1", serialize_event(b.created()), 0)
    assert format_tailed(Tailed(record, b.created())).startswith("p3@41     2026-01-01")
    error = InvalidEventError([FieldProblem("<event>", "not valid JSON")])
    assert (
        format_tailed(Tailed(record, None, error))
        == "p3@41     INVALID  invalid event: <event>: not valid JSON"
    )


def test_dead_letter_lines_name_stage_origin_and_reason() -> None:
    record = Record("memlake.events", 1, 9, None, b"\xffgarbage", 0)
    error = InvalidEventError([FieldProblem("<event>", "not valid JSON")])
    line = format_dead_letter(DeadLetter.invalid(record, error, stage="land"))
    assert " land        memlake.events[1]@9  invalid event: <event>: not valid JSON  | \ufffdgarbage" in line
    from_file = DeadLetter.from_file(error, original=b"{", stage="ingest", source_file="x.jsonl", line=4)
    assert "ingest      x.jsonl:4  invalid event" in format_dead_letter(from_file)
