"""The LLM-as-judge protocol of mem0, Zep and MemOS on LoCoMo, against any OpenAI-compatible endpoint.

An answer model (the endpoint's) answers each question from memlake's
memories; a judge model (the same endpoint) labels each answer CORRECT or
WRONG against the gold answer with mem0's published judge prompt
(`evaluation/metrics/llm_judge.py` in mem0, Apache-2.0), temperature 0, JSON
output `{"label": ...}`. Category 5 is excluded, as those papers do. MemOS
judges each answer several times and reports mean ± standard deviation over
the runs; `runs` does the same.
"""

from __future__ import annotations

__all__ = [
    "JUDGE_PROMPT",
    "ANSWER_PROMPT",
    "Label",
    "Judgement",
    "parse_label",
    "ChatEndpoint",
    "OpenAIChatEndpoint",
    "judge_answer",
    "endpoint_answer",
    "judge_accuracy",
]

import json
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from benchmarks.locomo.dataset import SCORED_CATEGORIES, Question
from memlake.errors import InfrastructureError

Label = Literal["CORRECT", "WRONG"]

# mem0's judge prompt, byte for byte (typographic quotes and trailing spaces included): the protocol
# is the prompt. It lives in a text file so that no formatter ever touches it.
JUDGE_PROMPT = (Path(__file__).parent / "judge_prompt.txt").read_text(encoding="utf-8")

# The answer prompt for the endpoint: the gist of mem0's (memories with their dates, short answers,
# resolve relative dates against the memory's date), in our words.
ANSWER_PROMPT = """You are answering a question about a long conversation between {speaker_a} and \
{speaker_b}, using memories taken from it. Each memory is one turn of the conversation, grouped under \
the date of its session.

Instructions:
- Use only the memories below. If they contradict each other, prefer the most recent one.
- Relative time references ("last year", "yesterday") are relative to the date of the memory's session: \
turn them into an actual date, month or year.
- Answer in a short phrase (under 10 words), without explanation.

Memories:
{context}

Question: {question}
Answer:"""

_JSON_OBJECT = re.compile(r"\{.*?\}", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Judgement:
    qid: str
    category: int
    labels: tuple[Label, ...]

    @property
    def score(self) -> float:
        return sum(1 for label in self.labels if label == "CORRECT") / len(self.labels)


def parse_label(content: str | None) -> Label:
    """The judge's label: the `label` of its JSON answer, else the one bare word it used; WRONG otherwise."""
    if not content:
        return "WRONG"
    candidates = [content, *_JSON_OBJECT.findall(content)]
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and isinstance(data.get("label"), str):
            return "CORRECT" if data["label"].strip().upper() == "CORRECT" else "WRONG"
    upper = content.upper()
    # An answer that names both labels is ambiguous; the protocol counts it wrong.
    if "CORRECT" in upper and "WRONG" not in upper:
        return "CORRECT"
    return "WRONG"


class ChatEndpoint(Protocol):
    """One chat completion: messages in, the assistant's text out."""

    def complete(
        self, messages: list[dict[str, str]], *, json_output: bool = False, max_tokens: int | None = None
    ) -> str: ...


class OpenAIChatEndpoint:
    """An OpenAI-compatible chat endpoint. The constructor does no I/O."""

    def __init__(self, *, base_url: str, model: str, api_key: str | None, timeout_s: float = 60.0) -> None:
        self._base_url = base_url
        self._model = model
        self._api_key = api_key or "not-needed"
        self._timeout_s = timeout_s
        self._client: Any = None

    def complete(
        self, messages: list[dict[str, str]], *, json_output: bool = False, max_tokens: int | None = None
    ) -> str:
        import openai

        if self._client is None:
            self._client = openai.OpenAI(
                base_url=self._base_url, api_key=self._api_key, timeout=self._timeout_s, max_retries=2
            )
        options: dict[str, Any] = {"model": self._model, "messages": messages, "temperature": 0.0}
        if max_tokens is not None:
            options["max_tokens"] = max_tokens
        try:
            if json_output:
                try:
                    response = self._client.chat.completions.create(
                        **options, response_format={"type": "json_object"}
                    )
                except openai.BadRequestError:
                    # Some compatible servers do not know response_format; the prompt asks for JSON anyway.
                    response = self._client.chat.completions.create(**options)
            else:
                response = self._client.chat.completions.create(**options)
        except openai.OpenAIError as e:
            raise InfrastructureError(f"chat endpoint {self._base_url}: {type(e).__name__}: {e}") from e
        return str(response.choices[0].message.content or "")


def judge_answer(endpoint: ChatEndpoint, *, question: str, gold_answer: str, generated_answer: str) -> Label:
    prompt = JUDGE_PROMPT.format(
        question=question, gold_answer=gold_answer, generated_answer=generated_answer
    )
    return parse_label(endpoint.complete([{"role": "user", "content": prompt}], json_output=True))


def endpoint_answer(
    endpoint: ChatEndpoint, *, speakers: tuple[str, str], context: str, question: str, max_tokens: int = 64
) -> str:
    prompt = ANSWER_PROMPT.format(
        speaker_a=speakers[0], speaker_b=speakers[1], context=context, question=question
    )
    return endpoint.complete([{"role": "user", "content": prompt}], max_tokens=max_tokens).strip()


def judge_accuracy(
    endpoint: ChatEndpoint,
    answered: Sequence[tuple[Question, str]],
    *,
    runs: int = 1,
) -> dict[str, Any]:
    """Judge every (question, generated answer) of categories 1-4, `runs` times each.

    Returns the accuracy overall and per category as the mean over runs, the
    standard deviation over runs, the counts, and each judgement.
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    judged: list[Judgement] = []
    for question, generated in answered:
        if question.category not in SCORED_CATEGORIES:
            continue
        labels = tuple(
            judge_answer(
                endpoint, question=question.question, gold_answer=question.answer, generated_answer=generated
            )
            for _ in range(runs)
        )
        judged.append(Judgement(question.qid, question.category, labels))

    def accuracy(members: list[Judgement]) -> dict[str, float | int]:
        if not members:
            return {"mean": float("nan"), "std": float("nan"), "n": 0}
        per_run = [sum(1 for j in members if j.labels[r] == "CORRECT") / len(members) for r in range(runs)]
        return {
            "mean": statistics.fmean(per_run),
            "std": statistics.pstdev(per_run) if runs > 1 else 0.0,
            "n": len(members),
        }

    by_category = {str(c): accuracy([j for j in judged if j.category == c]) for c in SCORED_CATEGORIES}
    return {
        "runs": runs,
        "overall": accuracy(judged),
        "by_category": by_category,
        "judgements": [{"qid": j.qid, "category": j.category, "labels": list(j.labels)} for j in judged],
    }
