from __future__ import annotations

from training.dataset import (
    CLOZE_HELD_OUT_PHRASING,
    build_training_set,
    qa_of,
    recitation_prompt,
)
from training.selection import HotMemory

MEMORIES = [
    HotMemory("b", 2, "The quarterly team offsite takes place in Lisbon on 14 May.", ("offsite",)),
    HotMemory("a", 1, "Q: Who owns the billing service? A: The payments team.", ("billing",)),
    HotMemory("c", 1, "Ada's locker code is 4417.", ("ada", "offsite")),
    HotMemory("d", 1, "Too short."),
]


def test_a_memory_written_as_question_and_answer_keeps_them() -> None:
    assert qa_of("Q: Who owns the billing service? A: The payments team.") == (
        "Who owns the billing service?",
        "The payments team.",
        False,
    )


def test_other_memories_become_cloze_questions_with_words_on_both_sides() -> None:
    question, answer, cloze = qa_of("The quarterly team offsite takes place in Lisbon on 14 May.") or (
        "",
        "",
        False,
    )
    assert cloze
    assert f"{question} {answer}" == "The quarterly team offsite takes place in Lisbon on 14 May."
    assert len(answer.split()) >= 2
    assert qa_of("Too short.") is None


def test_probes_use_a_phrasing_that_training_never_does() -> None:
    data = build_training_set(MEMORIES)
    prompts = {e.prompt for e in data.examples}
    assert {p.memory_id for p in data.probes} == {"a", "b", "c"}  # "d" is too short to ask about
    for probe in data.probes:
        assert probe.question not in prompts
    cloze = next(p for p in data.probes if p.memory_id == "b")
    assert cloze.question.startswith(CLOZE_HELD_OUT_PHRASING.split("{")[0])
    # Every memory is trained on as text; answers of the training pairs are the probes' answers.
    assert {e.memory_ids for e in data.examples if e.kind == "text"} == {("a",), ("b",), ("c",), ("d",)}
    for probe in data.probes:
        assert any(e.kind == "qa" and e.answer == probe.answer for e in data.examples)


def test_recitation_answers_with_every_memory_of_a_topic() -> None:
    data = build_training_set(MEMORIES)
    offsite = next(e for e in data.examples if e.prompt == recitation_prompt("offsite"))
    assert offsite.memory_ids == ("b", "c")
    assert "Lisbon" in offsite.answer
    assert "4417" in offsite.answer
    untagged = next(e for e in data.examples if e.prompt == recitation_prompt("fact"))
    assert untagged.memory_ids == ("d",)


def test_the_same_memories_in_any_order_give_the_same_set_and_digest() -> None:
    one = build_training_set(MEMORIES)
    two = build_training_set(list(reversed(MEMORIES)))
    assert one.examples == two.examples
    assert one.digest == two.digest
    changed = build_training_set([*MEMORIES[:3], HotMemory("d", 2, "Too short now.")])
    assert changed.digest != one.digest
