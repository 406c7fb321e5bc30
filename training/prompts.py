"""How memories, questions and answers become token ids, the same way everywhere.

A prompt is split in two: the prefix (the system turn with the memories a KV
cache encodes) and the suffix (whatever follows: retrieved context, the
question, the assistant header). The two parts are tokenized separately and
concatenated, on every path: with a cached prefix, without one, while
training and while evaluating. That is what makes an answer computed with a
reused KV cache token-for-token the same as one computed from scratch: both
see the same ids.

The split is found by rendering the model's own chat template with a sentinel
at the end of the system turn, so any chat model works, not only ChatML ones.
"""

from __future__ import annotations

__all__ = [
    "SYSTEM_PROMPT",
    "PromptParts",
    "memory_block",
    "system_with_memories",
    "encode_prompt",
    "encode_example",
]

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly."
_SENTINEL = "\u2063memlake-split\u2063"


@dataclass(frozen=True, slots=True)
class PromptParts:
    """Token ids of a prompt: a cacheable prefix and the rest."""

    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]

    @property
    def ids(self) -> list[int]:
        return [*self.prefix_ids, *self.suffix_ids]

    def __len__(self) -> int:
        return len(self.prefix_ids) + len(self.suffix_ids)


def memory_block(texts: Sequence[str]) -> str:
    """Memories as the system turn lists them."""
    return "What you remember:\n" + "\n".join(f"- {t.strip()}" for t in texts)


def system_with_memories(texts: Sequence[str], *, system: str = SYSTEM_PROMPT) -> str:
    return f"{system}\n\n{memory_block(texts)}" if texts else system


def _user_turn(question: str, context: Sequence[str]) -> str:
    if not context:
        return question
    return "Context:\n" + "\n".join(f"- {c.strip()}" for c in context) + f"\n\nQuestion: {question}"


def _render(tokenizer: Any, system: str, user: str) -> tuple[str, str]:
    """The chat rendered as text, split after the system content."""
    if getattr(tokenizer, "chat_template", None):
        text: str = tokenizer.apply_chat_template(
            [{"role": "system", "content": system + _SENTINEL}, {"role": "user", "content": user}],
            tokenize=False,
            add_generation_prompt=True,
        )
        head, sep, tail = text.partition(_SENTINEL)
        if sep:
            return head, tail
    # A base model without a chat template: a plain layout with the same split.
    return system, f"\n\nQuestion: {user}\nAnswer:"


def _encode(tokenizer: Any, text: str) -> tuple[int, ...]:
    return tuple(int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_prompt(
    tokenizer: Any,
    *,
    question: str,
    memories: Sequence[str] = (),
    context: Sequence[str] = (),
    system: str = SYSTEM_PROMPT,
) -> PromptParts:
    """A chat prompt whose prefix holds `memories` (what a KV cache encodes) and whose
    suffix holds retrieved `context` and the question, up to the assistant header."""
    head, tail = _render(
        tokenizer, system_with_memories(memories, system=system), _user_turn(question, context)
    )
    return PromptParts(_encode(tokenizer, head), _encode(tokenizer, tail))


def encode_example(
    tokenizer: Any,
    *,
    prompt: str | None,
    answer: str,
    memories: Sequence[str] = (),
    max_len: int | None = None,
) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of one training or evaluation example.

    `prompt=None` is plain language modelling on `answer` (a memory's text
    with no chat around it). The answer ends with the end-of-turn token so a
    model learns to stop. Long examples lose the front of the prompt first.
    """
    eos = tokenizer.eos_token_id
    if prompt is None:
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        prompt_ids = bos
        answer_ids = list(_encode(tokenizer, answer))
    else:
        parts = encode_prompt(tokenizer, question=prompt, memories=memories)
        prompt_ids = parts.ids
        answer_ids = list(_encode(tokenizer, answer))
    if eos is not None:
        answer_ids.append(int(eos))
    if max_len is not None and len(prompt_ids) + len(answer_ids) > max_len:
        answer_ids = answer_ids[:max_len]
        prompt_ids = (
            prompt_ids[len(prompt_ids) - (max_len - len(answer_ids)) :] if max_len > len(answer_ids) else []
        )
    return prompt_ids, answer_ids
