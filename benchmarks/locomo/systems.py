"""What the harness asks of a memory system under test, and the two baselines as such systems."""

from __future__ import annotations

__all__ = ["Retrieved", "MemorySystem", "TurnRetrieverSystem", "retrieved_from_turn"]

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from benchmarks.locomo.baselines import Retriever
from benchmarks.locomo.dataset import Conversation, Turn


@dataclass(frozen=True, slots=True)
class Retrieved:
    """One retrieved memory, mapped back to its turn through the source the memory kept."""

    dia_id: str
    session: int
    index: int
    date_text: str
    text: str


def retrieved_from_turn(turn: Turn) -> Retrieved:
    return Retrieved(turn.dia_id, turn.session, turn.index, turn.session_date_text, turn.document)


class MemorySystem(Protocol):
    """A system whose retrieval the harness measures: ingest every conversation, then search."""

    name: str

    def ingest(self, conversations: Sequence[Conversation]) -> dict[str, float]:
        """Store the turns; returns the seconds each ingestion stage took."""
        ...

    def search(self, conversation: Conversation, query: str, k: int) -> list[Retrieved]:
        """The best `k` memories of this conversation for `query`, best first."""
        ...

    def close(self) -> None: ...


class TurnRetrieverSystem:
    """A baseline retriever (BM25, dense) built per conversation over the dataset's turns."""

    def __init__(self, name: str, build: Callable[[Sequence[Turn]], Retriever]) -> None:
        self.name = name
        self._build = build
        self._retrievers: dict[str, Retriever] = {}
        self._turns: dict[str, Mapping[str, Turn]] = {}

    def ingest(self, conversations: Sequence[Conversation]) -> dict[str, float]:
        import time

        t0 = time.perf_counter()
        for conversation in conversations:
            self._retrievers[conversation.sample_id] = self._build(conversation.turns)
            self._turns[conversation.sample_id] = {t.dia_id: t for t in conversation.turns}
        return {"index": time.perf_counter() - t0}

    def search(self, conversation: Conversation, query: str, k: int) -> list[Retrieved]:
        turns = self._turns[conversation.sample_id]
        return [
            retrieved_from_turn(turns[dia_id])
            for dia_id in self._retrievers[conversation.sample_id].search(query, k)
        ]

    def close(self) -> None:
        self._retrievers.clear()
