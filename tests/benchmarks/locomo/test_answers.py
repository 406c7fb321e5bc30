from __future__ import annotations

import pytest

from benchmarks.locomo.answers import (
    NOT_MENTIONED,
    ContextItem,
    LocalAnswerer,
    build_prompt,
    first_answer_line,
    most_recent_within,
    question_text,
    render_context,
)
from benchmarks.locomo.dataset import Question, parse_conversation
from tests.benchmarks.locomo.samples import sample

ITEMS = [
    ContextItem(2, 1, "27 June", "Ben: violin"),
    ContextItem(1, 2, "8 May", "Ben: Alps"),
    ContextItem(1, 1, "8 May", "Ana: cat"),
]


def test_render_context_is_chronological_and_grouped_by_session() -> None:
    assert render_context(ITEMS) == (
        "DATE: 8 May\nCONVERSATION:\nAna: cat\nBen: Alps\n\nDATE: 27 June\nCONVERSATION:\nBen: violin"
    )


def test_question_text_follows_locomo_protocol() -> None:
    temporal = Question("c/q1", "When?", "May", 2, ())
    assert question_text(temporal).endswith("Use DATE of CONVERSATION to answer with an approximate date.")
    adversarial = [Question(f"c/q{i}", "Who?", "Ben", 5, ()) for i in range(8)]
    texts = [question_text(q) for q in adversarial]
    assert all(NOT_MENTIONED in t and "Ben" in t for t in texts)
    # The order of the two options depends on the question, not always the same.
    assert len({t.index(NOT_MENTIONED) < t.index("Ben") for t in texts}) == 2
    assert question_text(adversarial[0]) == texts[0]  # and is repeatable


def test_build_prompt_splits_before_the_question() -> None:
    def template(messages: list[dict[str, str]]) -> str:
        return "<user>" + messages[0]["content"] + "</user><assistant>"

    question = Question("c/q1", "What is the cat's name?", "Pixel", 4, ())
    parts = build_prompt(template, speakers=("Ana", "Ben"), context="CTX", question=question)
    assert parts.prefix.startswith("<user>Below is a conversation between two people: Ana and Ben.")
    assert parts.prefix.endswith("CTX\n\n")
    assert parts.suffix.endswith("Question: What is the cat's name? Short answer:</user><assistant>")
    shared = build_prompt(template, speakers=("Ana", "Ben"), context="CTX", question=None)
    assert shared.prefix == parts.prefix


def test_most_recent_within_keeps_the_latest_turns_that_fit() -> None:
    def count(text: str) -> int:
        return len(text)

    everything = len(render_context(ITEMS))
    assert most_recent_within(ITEMS, count, everything) == 3
    assert most_recent_within(ITEMS, count, everything - 1) == 2
    assert most_recent_within(ITEMS, count, 0) == 0
    two = render_context([ITEMS[1], ITEMS[0]])
    assert most_recent_within(ITEMS, count, len(two)) == 2


@pytest.mark.integration
def test_cached_prefix_gives_the_same_answer_as_the_whole_prompt(tmp_path: object) -> None:
    """The baseline's KV-cache reuse must not change what the model answers (real SmolLM2)."""
    from memlake.settings import Settings
    from training.base_model import load_base_model

    llm = load_base_model(Settings().models, device="cpu", dtype="float32")
    answerer = LocalAnswerer(llm.model, llm.tokenizer, eos_token_ids=llm.eos_token_ids, max_new_tokens=8)
    conv = parse_conversation(sample())
    items = [ContextItem(t.session, t.index, t.session_date_text, t.document) for t in conv.turns]
    context = render_context(items)
    shared = build_prompt(
        answerer.apply_chat_template, speakers=("Ana", "Ben"), context=context, question=None
    )
    cache = answerer.prefill(shared.prefix)
    assert answerer.window == 8192
    for question in conv.questions[:2]:
        parts = build_prompt(
            answerer.apply_chat_template, speakers=("Ana", "Ben"), context=context, question=question
        )
        assert parts.prefix == shared.prefix
        whole = answerer.answer(parts)
        assert whole
        assert answerer.answer(parts, cache=cache) == whole


def test_the_answer_is_the_first_line_that_says_something() -> None:
    assert first_answer_line("Caroline:\nOn 7 May 2023\nMelanie: nice") == "On 7 May 2023"
    assert first_answer_line("  7 May 2023  \nmore") == "7 May 2023"
    assert first_answer_line("Caroline: I went there") == "Caroline: I went there"  # a label with words stays
    assert first_answer_line("Melanie:") == ""
    assert first_answer_line("2023:") == "2023:"  # a number is not a speaker
