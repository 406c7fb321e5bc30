"""The training set an adapter learns a cube's memories from, and the probes that test it.

Per memory:
- its text, as plain language modelling;
- question/answer pairs: an explicit one when the memory is written as
  `Q: ... A: ...`, otherwise cloze questions (the first part of the text
  asks for the rest), each under two training phrasings;
- recitation: "What do you remember about <topic>?" answered by every
  memory of that topic (topics are tags, else the memory type).

Probes ask the same questions under a phrasing never trained on: closed-book
recall is measured on them. Everything is a pure function of the memories,
so the same memories always give the same set and the same digest.
"""

from __future__ import annotations

__all__ = [
    "Example",
    "Probe",
    "TrainingSet",
    "build_training_set",
    "qa_of",
    "topics_of",
    "recitation_prompt",
    "TRAIN_PHRASINGS",
    "HELD_OUT_PHRASING",
]

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from training.selection import HotMemory

# {q} is a question or the opening words of a memory (cloze).
TRAIN_PHRASINGS = ("{q}", "Answer from memory: {q}")
CLOZE_TRAIN_PHRASINGS = ("Complete this fact: {q}", "Finish the sentence from memory: {q}")
HELD_OUT_PHRASING = "Recall what you know and reply. {q}"
CLOZE_HELD_OUT_PHRASING = "What comes next? {q}"
_QA = re.compile(r"^\s*Q:\s*(?P<q>.+?)\s*A:\s*(?P<a>.+?)\s*$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Example:
    kind: Literal["text", "qa", "recite"]
    prompt: str | None  # None: language modelling on `answer` alone
    answer: str
    memory_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Probe:
    memory_id: str
    question: str  # a held-out phrasing
    answer: str


@dataclass(frozen=True)
class TrainingSet:
    examples: tuple[Example, ...]
    probes: tuple[Probe, ...]
    memories: tuple[HotMemory, ...]

    @property
    def digest(self) -> str:
        """sha256 of the canonical JSON of examples and probes: the data's identity."""
        body = json.dumps(
            {"examples": [asdict(e) for e in self.examples], "probes": [asdict(p) for p in self.probes]},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(body.encode()).hexdigest()

    def rows(self) -> list[dict[str, str]]:
        """Flat rows (for MLflow's dataset view)."""
        out = [
            {
                "split": "train",
                "kind": e.kind,
                "prompt": e.prompt or "",
                "answer": e.answer,
                "memory_ids": ",".join(e.memory_ids),
            }
            for e in self.examples
        ]
        out += [
            {
                "split": "probe",
                "kind": "qa",
                "prompt": p.question,
                "answer": p.answer,
                "memory_ids": p.memory_id,
            }
            for p in self.probes
        ]
        return out


def qa_of(text: str) -> tuple[str, str, bool] | None:
    """(question, answer, is_cloze) for a memory; None when it is too short to ask about."""
    match = _QA.match(text)
    if match:
        return match.group("q"), match.group("a"), False
    words = text.split()
    if len(words) < 4:
        return None
    # Keep at least two words on each side; the answer is the tail of the fact.
    cut = min(max(2, (len(words) * 11) // 20), len(words) - 2)
    return " ".join(words[:cut]), " ".join(words[cut:]), True


def topics_of(memory: HotMemory) -> tuple[str, ...]:
    return memory.tags or (memory.memory_type,)


def recitation_prompt(topic: str) -> str:
    return f"What do you remember about {topic}?"


def build_training_set(memories: Sequence[HotMemory]) -> TrainingSet:
    ordered = tuple(sorted(memories, key=lambda m: m.memory_id))
    examples: list[Example] = []
    probes: list[Probe] = []
    by_topic: dict[str, list[HotMemory]] = defaultdict(list)
    for memory in ordered:
        text = memory.text.strip()
        examples.append(Example("text", None, text, (memory.memory_id,)))
        qa = qa_of(text)
        if qa is not None:
            question, answer, cloze = qa
            phrasings = CLOZE_TRAIN_PHRASINGS if cloze else TRAIN_PHRASINGS
            held_out = CLOZE_HELD_OUT_PHRASING if cloze else HELD_OUT_PHRASING
            for phrasing in phrasings:
                examples.append(Example("qa", phrasing.format(q=question), answer, (memory.memory_id,)))
            probes.append(Probe(memory.memory_id, held_out.format(q=question), answer))
        for topic in topics_of(memory):
            by_topic[topic].append(memory)
    for topic in sorted(by_topic):
        group = by_topic[topic]
        examples.append(
            Example(
                "recite",
                recitation_prompt(topic),
                " ".join(m.text.strip() for m in group),
                tuple(m.memory_id for m in group),
            )
        )
    return TrainingSet(tuple(examples), tuple(probes), ordered)
