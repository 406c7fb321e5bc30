"""Reading a LoCoMo-format file: conversations, their turns and their questions.

Any file in the format of LoCoMo's `data/locomo10.json` works: a JSON list of
samples, each with a `conversation` (`session_N` turn lists and their
`session_N_date_time`) and `qa` items (`question`, `answer` or
`adversarial_answer`, `evidence` dialogue ids, `category`).

Evidence ids are kept only when they name a turn of the conversation; the
rest (a few are malformed in the public file, e.g. `"D8:6; D9:17"` as one id)
are split into ids first and whatever still names no turn is counted apart,
so recall is measured on evidence that exists.
"""

from __future__ import annotations

__all__ = [
    "CATEGORY_NAMES",
    "SCORED_CATEGORIES",
    "Turn",
    "Question",
    "Conversation",
    "load_locomo",
    "parse_conversation",
    "parse_session_date",
    "session_of",
    "first_sessions",
]

import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memlake.errors import DatasetError

# LoCoMo's own numbering (task_eval/evaluation.py); some papers relabel 1/3/4.
CATEGORY_NAMES: dict[int, str] = {
    1: "multi-hop",
    2: "temporal",
    3: "open-domain",
    4: "single-hop",
    5: "adversarial",
}
# Category 5 (unanswerable) is reported apart, as mem0, Zep and MemOS do.
SCORED_CATEGORIES: tuple[int, ...] = (1, 2, 3, 4)

_DIA_ID = re.compile(r"D:?(\d+):(\d+)")
_SESSION_KEY = re.compile(r"^session_(\d+)$")
_DATE_FORMAT = "%I:%M %p on %d %B, %Y"


def session_of(dia_id: str) -> int:
    """`D12:3` -> 12."""
    match = _DIA_ID.fullmatch(dia_id)
    if match is None:
        raise ValueError(f"{dia_id!r} is not a dialogue id of the form D<session>:<turn>")
    return int(match.group(1))


def parse_session_date(text: str) -> datetime | None:
    """`"1:56 pm on 8 May, 2023"` -> that moment (read as UTC); None when it does not parse."""
    try:
        return datetime.strptime(text.strip(), _DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Turn:
    """One utterance: what becomes one plaintext memory."""

    dia_id: str
    session: int
    index: int
    speaker: str
    text: str
    session_date_text: str
    session_date: datetime | None
    image_caption: str | None = None

    @property
    def document(self) -> str:
        """The text every retriever indexes for this turn (the memory's content)."""
        body = f"{self.speaker}: {self.text}"
        if self.image_caption:
            body += f" [shares a photo: {self.image_caption}]"
        return body


@dataclass(frozen=True, slots=True)
class Question:
    qid: str
    question: str
    answer: str
    category: int
    evidence: tuple[str, ...]
    unresolved_evidence: tuple[str, ...] = ()

    @property
    def evidence_sessions(self) -> frozenset[int]:
        return frozenset(session_of(e) for e in self.evidence)


@dataclass(frozen=True, slots=True)
class Conversation:
    sample_id: str
    speaker_a: str
    speaker_b: str
    turns: tuple[Turn, ...]
    questions: tuple[Question, ...]
    session_dates: dict[int, str] = field(default_factory=dict)

    @property
    def turn_ids(self) -> frozenset[str]:
        return frozenset(t.dia_id for t in self.turns)


def _str(value: Any, *, where: str, path: Path | None) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise DatasetError(str(path or "<data>"), f"{where}: expected text, got {type(value).__name__}")


def _turns(conversation: dict[str, Any], *, sample_id: str, path: Path | None) -> list[Turn]:
    sessions = sorted(
        (int(m.group(1)), key)
        for key in conversation
        if (m := _SESSION_KEY.match(key)) and isinstance(conversation[key], list)
    )
    turns: list[Turn] = []
    for number, key in sessions:
        date_text = str(conversation.get(f"{key}_date_time", ""))
        date = parse_session_date(date_text)
        for position, raw in enumerate(conversation[key], start=1):
            where = f"{sample_id} {key}[{position}]"
            if not isinstance(raw, dict) or "dia_id" not in raw or "text" not in raw:
                raise DatasetError(str(path or "<data>"), f"{where}: a turn needs 'dia_id' and 'text'")
            dia_id = _str(raw["dia_id"], where=where, path=path).strip()
            match = _DIA_ID.fullmatch(dia_id)
            index = int(match.group(2)) if match else position
            caption = raw.get("blip_caption")
            turns.append(
                Turn(
                    dia_id=dia_id,
                    session=number,
                    index=index,
                    speaker=_str(raw.get("speaker", "?"), where=where, path=path),
                    text=_str(raw["text"], where=where, path=path),
                    session_date_text=date_text,
                    session_date=date,
                    image_caption=caption if isinstance(caption, str) and caption.strip() else None,
                )
            )
    return turns


def _evidence(raw: Any, known: frozenset[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    resolved: list[str] = []
    unresolved: list[str] = []
    items = raw if isinstance(raw, list) else []
    for item in items:
        text = str(item)
        ids = [f"D{s}:{t}" for s, t in _DIA_ID.findall(text)]
        if not ids:
            unresolved.append(text)
        for dia_id in ids:
            target = resolved if dia_id in known else unresolved
            if dia_id not in target:
                target.append(dia_id)
    return tuple(resolved), tuple(unresolved)


def parse_conversation(sample: dict[str, Any], *, path: Path | None = None) -> Conversation:
    """One sample of a LoCoMo file."""
    sample_id = str(sample.get("sample_id", "")).strip()
    conversation = sample.get("conversation")
    if not sample_id or not isinstance(conversation, dict):
        raise DatasetError(str(path or "<data>"), "a sample needs 'sample_id' and a 'conversation' object")
    turns = _turns(conversation, sample_id=sample_id, path=path)
    known = frozenset(t.dia_id for t in turns)
    questions: list[Question] = []
    for number, qa in enumerate(sample.get("qa", []), start=1):
        where = f"{sample_id} qa[{number}]"
        if not isinstance(qa, dict) or "question" not in qa or "category" not in qa:
            raise DatasetError(str(path or "<data>"), f"{where}: needs 'question' and 'category'")
        category = int(qa["category"])
        answer = qa.get("answer", qa.get("adversarial_answer", ""))
        evidence, unresolved = _evidence(qa.get("evidence"), known)
        questions.append(
            Question(
                qid=f"{sample_id}/q{number}",
                question=_str(qa["question"], where=where, path=path),
                answer=_str(answer, where=where, path=path),
                category=category,
                evidence=evidence,
                unresolved_evidence=unresolved,
            )
        )
    dates = {
        int(m.group(1)): str(conversation[f"{key}_date_time"])
        for key in conversation
        if (m := _SESSION_KEY.match(key)) and f"{key}_date_time" in conversation
    }
    return Conversation(
        sample_id=sample_id,
        speaker_a=str(conversation.get("speaker_a", "")),
        speaker_b=str(conversation.get("speaker_b", "")),
        turns=tuple(turns),
        questions=tuple(questions),
        session_dates=dates,
    )


def load_locomo(path: Path) -> list[Conversation]:
    """Every conversation of a LoCoMo-format JSON file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DatasetError(str(path), f"cannot read: {e}") from e
    except json.JSONDecodeError as e:
        raise DatasetError(str(path), f"not valid JSON: {e}") from e
    if not isinstance(data, list):
        raise DatasetError(str(path), "expected a JSON list of samples")
    return [parse_conversation(sample, path=path) for sample in data]


def first_sessions(conversation: Conversation, sessions: int) -> Conversation:
    """The conversation up to its `sessions`-th session, with the questions whose evidence lies there.

    Questions without evidence are dropped too: nothing says where their answer is.
    """
    turns = tuple(t for t in conversation.turns if t.session <= sessions)
    questions = tuple(
        q
        for q in conversation.questions
        if q.evidence and not q.unresolved_evidence and all(session_of(e) <= sessions for e in q.evidence)
    )
    dates = {n: d for n, d in conversation.session_dates.items() if n <= sessions}
    return replace(conversation, turns=turns, questions=questions, session_dates=dates)
