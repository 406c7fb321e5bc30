"""The judge protocol against a tiny local OpenAI-compatible stub server (parsing and protocol only).

The whole path (the harness asking a configured endpoint to answer and to judge)
runs in tests/benchmarks/test_benchmarks_tiny.py against the same stub.
"""

from __future__ import annotations

import pytest

from benchmarks.locomo.dataset import Question
from benchmarks.locomo.judge import (
    JUDGE_PROMPT,
    OpenAIChatEndpoint,
    endpoint_answer,
    judge_accuracy,
    judge_answer,
    parse_label,
)
from memlake.errors import InfrastructureError
from tests.benchmarks.chat_stub import Stub


def test_parse_label_variants() -> None:
    assert parse_label('{"label": "CORRECT"}') == "CORRECT"
    assert parse_label('{"label": "wrong"}') == "WRONG"
    assert parse_label('Reasoning: same date. {"label": "CORRECT"}') == "CORRECT"
    assert parse_label("The answer is CORRECT") == "CORRECT"
    assert parse_label("CORRECT or WRONG? hard to say") == "WRONG"
    assert parse_label("") == "WRONG"
    assert parse_label(None) == "WRONG"


def test_judge_sends_mem0_prompt_and_reads_the_label(stub: tuple[Stub, str]) -> None:
    state, url = stub
    endpoint = OpenAIChatEndpoint(base_url=url, model="judge-model", api_key="k")
    state.replies = ['{"label": "CORRECT"}']
    label = judge_answer(endpoint, question="When?", gold_answer="7 May 2023", generated_answer="May 7th")
    assert label == "CORRECT"
    request = state.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer k"
    assert request["model"] == "judge-model"
    assert request["temperature"] == 0.0
    assert request["response_format"] == {"type": "json_object"}
    content = request["messages"][0]["content"]
    assert content == JUDGE_PROMPT.format(
        question="When?", gold_answer="7 May 2023", generated_answer="May 7th"
    )
    assert "Gold answer: 7 May 2023\nGenerated answer: May 7th" in content
    # The published prompt, byte for byte: typographic quotes included.
    assert "\u2019CORRECT\u2019 or \u2019WRONG\u2019" in content


def test_judge_retries_without_response_format(stub: tuple[Stub, str]) -> None:
    state, url = stub
    state.reject_response_format = True
    state.replies = ['{"label": "CORRECT"}']
    endpoint = OpenAIChatEndpoint(base_url=url, model="m", api_key=None)
    assert judge_answer(endpoint, question="q", gold_answer="a", generated_answer="a") == "CORRECT"
    assert "response_format" not in state.requests[-1]


def test_endpoint_errors_are_translated(stub: tuple[Stub, str]) -> None:
    state, url = stub
    state.fail = True
    endpoint = OpenAIChatEndpoint(base_url=url, model="m", api_key=None, timeout_s=5)
    with pytest.raises(InfrastructureError, match="chat endpoint"):
        endpoint.complete([{"role": "user", "content": "hi"}])


def test_accuracy_excludes_category_5_and_averages_runs(stub: tuple[Stub, str]) -> None:
    state, url = stub
    endpoint = OpenAIChatEndpoint(base_url=url, model="m", api_key=None)
    answered = [
        (Question("c/q1", "q1", "a1", 1, ()), "x"),
        (Question("c/q2", "q2", "a2", 5, ()), "x"),  # never sent to the judge
        (Question("c/q3", "q3", "a3", 4, ()), "x"),
    ]
    # Two runs: q1 CORRECT then WRONG; q3 CORRECT twice.
    state.replies = ['{"label":"CORRECT"}', '{"label":"WRONG"}', '{"label":"CORRECT"}', '{"label":"CORRECT"}']
    result = judge_accuracy(endpoint, answered, runs=2)
    assert len(state.requests) == 4
    assert all("q2" not in r["messages"][0]["content"] for r in state.requests)
    assert result["overall"]["n"] == 2
    assert result["overall"]["mean"] == pytest.approx(0.75)  # runs: 1.0 and 0.5
    assert result["overall"]["std"] == pytest.approx(0.25)
    assert result["by_category"]["1"]["mean"] == pytest.approx(0.5)
    assert result["by_category"]["4"]["mean"] == pytest.approx(1.0)
    assert result["by_category"]["2"]["n"] == 0


def test_endpoint_answer_carries_context_and_question(stub: tuple[Stub, str]) -> None:
    state, url = stub
    state.replies = ["  Pixel  "]
    endpoint = OpenAIChatEndpoint(base_url=url, model="m", api_key=None)
    answer = endpoint_answer(endpoint, speakers=("Ana", "Ben"), context="DATE: x\nAna: cat", question="Name?")
    assert answer == "Pixel"
    content = state.requests[0]["messages"][0]["content"]
    assert "Ana and Ben" in content
    assert "DATE: x\nAna: cat" in content
    assert "Question: Name?" in content
    assert "response_format" not in state.requests[0]
