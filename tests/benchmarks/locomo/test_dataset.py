from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks.locomo.dataset import (
    first_sessions,
    load_locomo,
    parse_conversation,
    parse_session_date,
    session_of,
)
from memlake.errors import DatasetError
from tests.benchmarks.locomo.samples import sample


def test_turns_keep_dialogue_ids_sessions_and_dates() -> None:
    conv = parse_conversation(sample())
    assert conv.sample_id == "conv-x"
    assert [t.dia_id for t in conv.turns] == ["D1:1", "D1:2", "D1:3", "D2:1", "D2:2"]
    first = conv.turns[0]
    assert (first.session, first.index, first.speaker) == (1, 1, "Ana")
    assert first.session_date == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    assert first.session_date_text == "1:56 pm on 8 May, 2023"
    assert conv.turns[3].session_date == datetime(2023, 6, 27, 10, 37, tzinfo=UTC)
    assert conv.turns[2].document == "Ana: Look at this. [shares a photo: a photo of a grey cat on a sofa]"
    assert conv.turns[0].document == "Ana: I adopted a grey cat named Pixel yesterday."


def test_questions_resolve_evidence_and_answers() -> None:
    conv = parse_conversation(sample())
    by_category = {q.category: q for q in conv.questions}
    assert by_category[1].evidence == ("D1:3", "D2:2")  # "D1:3; D2:2" split into two ids
    assert by_category[1].evidence_sessions == frozenset({1, 2})
    assert by_category[3].answer == "2023"  # an integer answer becomes text
    assert by_category[3].evidence == ()
    assert by_category[3].unresolved_evidence == ("D9:9",)
    assert by_category[5].answer == "violin"  # category 5 carries adversarial_answer
    assert [q.qid for q in conv.questions] == [f"conv-x/q{i}" for i in range(1, 6)]


def test_load_file_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps([sample("a"), sample("b")]))
    assert [c.sample_id for c in load_locomo(path)] == ["a", "b"]
    with pytest.raises(DatasetError, match="cannot read"):
        load_locomo(tmp_path / "missing.json")
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON") as info:
        load_locomo(path)
    assert info.value.path == str(path)
    path.write_text(json.dumps({"sample_id": "a"}))
    with pytest.raises(DatasetError, match="JSON list"):
        load_locomo(path)
    broken = sample()
    del broken["conversation"]["session_1"][0]["dia_id"]
    with pytest.raises(DatasetError, match="dia_id"):
        parse_conversation(broken)


def test_session_helpers() -> None:
    assert session_of("D12:3") == 12
    with pytest.raises(ValueError, match="dialogue id"):
        session_of("turn 3")
    assert parse_session_date("not a date") is None


def test_first_sessions_keeps_the_questions_about_them() -> None:
    conv = parse_conversation(sample())
    cut = first_sessions(conv, 1)
    assert [t.dia_id for t in cut.turns] == ["D1:1", "D1:2", "D1:3"]
    # Kept: evidence in session 1 only. Dropped: evidence in session 2, and the unresolved one.
    assert [q.category for q in cut.questions] == [4, 2]
    assert cut.session_dates == {1: "1:56 pm on 8 May, 2023"}
