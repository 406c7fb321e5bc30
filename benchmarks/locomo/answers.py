"""Answering LoCoMo questions with a local base model, from a context of turns.

The prompt follows LoCoMo's own QA protocol (`task_eval/gpt_utils.py`): the
conversation excerpt grouped by session under its date, then "write an answer
in the form of a short phrase"; temporal questions (category 2) ask to use the
date of the conversation; adversarial ones (category 5) offer two options,
"Not mentioned in the conversation" and the adversarial answer, in an order
fixed per question. Both systems compared get the same template and greedy
decoding; only the context differs:

- memlake: the memories its retrieval returns for the question;
- baseline: the most recent turns that fit the model's context window
  ("truncated full context"). That context is the same for every question of
  a conversation, so its KV cache is computed once and cropped back after
  each question instead of re-reading ~8k tokens per question.
"""

from __future__ import annotations

__all__ = [
    "ContextItem",
    "render_context",
    "question_text",
    "PromptParts",
    "build_prompt",
    "most_recent_within",
    "LocalAnswerer",
    "NOT_MENTIONED",
    "first_answer_line",
]

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.locomo.dataset import Question

NOT_MENTIONED = "Not mentioned in the conversation"
_SENTINEL = "\u2063MEMLAKE-SPLIT\u2063"
_START = (
    "Below is a conversation between two people: {a} and {b}. The conversation takes place over "
    "multiple days and the date of each conversation is written at the beginning of the conversation.\n\n"
)
_QA = (
    "Based on the above context, write an answer in the form of a short phrase for the following "
    "question. Answer with exact words from the context whenever possible.\n\nQuestion: {q} Short answer:"
)
# A line that is only a speaker label ("Caroline:"): a small model copying the transcript's layout
# writes one and puts what it says on the next line.
_LABEL_ONLY = re.compile(r"[^\W\d][\w .'-]{0,40}:")
_QA_ADVERSARIAL = "Based on the above context, answer the following question.\n\nQuestion: {q} Short answer:"


@dataclass(frozen=True, slots=True)
class ContextItem:
    """One turn as a context line: where it sits in the conversation and its text."""

    session: int
    index: int
    date_text: str
    text: str


def render_context(items: Sequence[ContextItem]) -> str:
    """Chronological, grouped by session under `DATE:` headers (LoCoMo's layout)."""
    lines: list[str] = []
    current: int | None = None
    for item in sorted(items, key=lambda i: (i.session, i.index)):
        if item.session != current:
            if lines:
                lines.append("")
            lines += [f"DATE: {item.date_text}", "CONVERSATION:"]
            current = item.session
        lines.append(item.text)
    return "\n".join(lines)


def question_text(question: Question) -> str:
    """The question as LoCoMo's protocol asks it."""
    if question.category == 2:
        return question.question + " Use DATE of CONVERSATION to answer with an approximate date."
    if question.category == 5:
        options = [NOT_MENTIONED, question.answer]
        # A stable per-question coin, so that runs are repeatable and the order is not always the same.
        if hashlib.sha256(question.qid.encode()).digest()[0] % 2:
            options.reverse()
        return question.question + f" Select the correct answer: (a) {options[0]} (b) {options[1]}."
    return question.question


@dataclass(frozen=True, slots=True)
class PromptParts:
    """A chat prompt cut in two: the shared prefix (instructions + context) and the question part."""

    prefix: str
    suffix: str


def build_prompt(
    apply_chat_template: Callable[[list[dict[str, str]]], str],
    *,
    speakers: tuple[str, str],
    context: str,
    question: Question | None,
) -> PromptParts:
    """Render the chat prompt with the model's template and split it before the question.

    With `question=None` only the split point matters (the prefix, for a KV cache shared by
    every question); the suffix is then the template's tail.
    """
    head = _START.format(a=speakers[0], b=speakers[1]) + context + "\n\n"
    if question is None:
        tail = ""
    else:
        template = _QA_ADVERSARIAL if question.category == 5 else _QA
        tail = template.format(q=question_text(question))
    rendered = apply_chat_template([{"role": "user", "content": head + _SENTINEL + tail}])
    prefix, sep, suffix = rendered.partition(_SENTINEL)
    if not sep:
        raise ValueError("the chat template dropped part of the message")
    return PromptParts(prefix=prefix, suffix=suffix)


def most_recent_within(items: Sequence[ContextItem], count_tokens: Callable[[str], int], budget: int) -> int:
    """How many of the last `items` fit in `budget` tokens once rendered (binary search)."""
    ordered = sorted(items, key=lambda i: (i.session, i.index))
    low, high = 0, len(ordered)
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(render_context(ordered[len(ordered) - middle :])) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


class LocalAnswerer:
    """Greedy answers from a transformers causal LM, optionally over a cached shared prefix.

    `model` and `tokenizer` are the base model's (training.base_model.BaseLLM);
    the constructor does no I/O.
    """

    def __init__(
        self, model: Any, tokenizer: Any, *, eos_token_ids: Sequence[int], max_new_tokens: int = 24
    ) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._eos = frozenset(eos_token_ids)
        self.max_new_tokens = max_new_tokens

    @property
    def window(self) -> int:
        """The model's context window in tokens."""
        return int(self._model.config.max_position_embeddings)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str:
        rendered = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return str(rendered)

    def _ids(self, text: str) -> Any:
        import torch

        ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        return torch.tensor([ids], dtype=torch.long, device=self._model.device)

    def prefill(self, prefix: str) -> tuple[Any, int]:
        """Run the shared prefix once; returns its KV cache and its length in tokens."""
        import torch

        ids = self._ids(prefix)
        with torch.inference_mode():
            out = self._model(input_ids=ids, use_cache=True, logits_to_keep=1)
        return out.past_key_values, int(ids.shape[1])

    def answer(self, prompt: PromptParts, *, cache: tuple[Any, int] | None = None) -> str:
        """Greedy-decode an answer. With `cache` (from `prefill(prompt.prefix)`), only the suffix is read."""
        import torch

        if cache is None:
            past: Any = None
            # Prefix and suffix are tokenised apart in both modes, so that a cached and an
            # uncached prompt read exactly the same token ids.
            ids = torch.cat([self._ids(prompt.prefix), self._ids(prompt.suffix)], dim=1)
        else:
            past, prefix_len = cache
            # Generation appends to the cache: cut it back to the shared prefix first
            # (transformers 5 crops by a negative count of tokens to remove).
            extra = int(past.get_seq_length()) - prefix_len
            if extra > 0:
                past.crop(-extra)
            ids = self._ids(prompt.suffix)
        generated: list[int] = []
        with torch.inference_mode():
            for _ in range(self.max_new_tokens):
                out = self._model(input_ids=ids, past_key_values=past, use_cache=True, logits_to_keep=1)
                past = out.past_key_values
                token = int(out.logits[0, -1].argmax())
                if token in self._eos:
                    break
                generated.append(token)
                ids = torch.tensor([[token]], dtype=torch.long, device=self._model.device)
        return first_answer_line(str(self._tokenizer.decode(generated, skip_special_tokens=True)))


def first_answer_line(text: str) -> str:
    """The answer in a generation: its first line that says something, a bare speaker label skipped."""
    lines = [line.strip() for line in text.strip().split("\n")]
    return next((line for line in lines if line and not _LABEL_ONLY.fullmatch(line)), "")
