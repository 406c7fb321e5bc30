"""The memory scheduler (MemOS's MemScheduler): which memories a request gets, within a token budget.

Candidates come from hybrid retrieval (each with a relevance in [0, 1]) plus
the pinned memories of the cubes read. Each gets four components in [0, 1]:

- relevance: from retrieval, the mean of the cosine similarity and the BM25 score
  relative to the best of the search (`serving.retrieval`);
- recency: `0.5 ** (age / half_life)`, age since the last access or update;
- priority: the memory's governance priority;
- frequency: `log(1 + access_count) / log(1 + saturation)`, capped at 1.

A policy turns them into one score: `weighted` (the weighted mean, weights in
the settings), `semantic` (relevance), `lru` (recency: most recently used
first), `lfu` (frequency) or `priority`. Pinned memories come first whatever
the policy. Memories are then taken best first while they fit the budget; one
that does not fit is skipped and smaller ones after it may still go in.
"""

from __future__ import annotations

__all__ = [
    "SchedulerPolicy",
    "SchedulerWeights",
    "Candidate",
    "Scored",
    "Schedule",
    "MemScheduler",
    "render_memory",
]

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from memlake.model import Memory


class SchedulerPolicy(StrEnum):
    WEIGHTED = "weighted"
    SEMANTIC = "semantic"
    LRU = "lru"
    LFU = "lfu"
    PRIORITY = "priority"


@dataclass(frozen=True, slots=True)
class SchedulerWeights:
    relevance: float = 0.55
    recency: float = 0.20
    priority: float = 0.15
    frequency: float = 0.10

    def __post_init__(self) -> None:
        values = (self.relevance, self.recency, self.priority, self.frequency)
        if any(v < 0 for v in values) or sum(values) <= 0:
            raise ValueError("scheduler weights must be non-negative and not all zero")


@dataclass(frozen=True, slots=True)
class Candidate:
    memory: Memory
    text: str  # what goes into the context (opened content)
    relevance: float = 0.0


@dataclass(frozen=True, slots=True)
class Scored:
    candidate: Candidate
    score: float
    components: dict[str, float]
    tokens: int = 0

    @property
    def memory(self) -> Memory:
        return self.candidate.memory


@dataclass(frozen=True, slots=True)
class Schedule:
    chosen: tuple[Scored, ...]
    skipped: tuple[Scored, ...] = ()  # candidates that did not fit the budget
    budget: int = 0
    tokens_used: int = 0
    policy: SchedulerPolicy = SchedulerPolicy.WEIGHTED
    notes: dict[str, float] = field(default_factory=dict)


def render_memory(text: str) -> str:
    """One memory as it appears in a context."""
    return f"- {' '.join(text.split())}\n"


class MemScheduler:
    def __init__(
        self,
        *,
        policy: SchedulerPolicy = SchedulerPolicy.WEIGHTED,
        weights: SchedulerWeights = SchedulerWeights(),
        recency_half_life_hours: float = 168.0,
        frequency_saturation: int = 100,
    ) -> None:
        if recency_half_life_hours <= 0 or frequency_saturation < 1:
            raise ValueError("half life must be positive and saturation at least 1")
        self.policy = policy
        self.weights = weights
        self.recency_half_life_hours = recency_half_life_hours
        self.frequency_saturation = frequency_saturation

    def components(self, candidate: Candidate, *, now: datetime) -> dict[str, float]:
        memory = candidate.memory
        last_used = max(
            t for t in (memory.indicators.last_accessed_at, memory.header.updated_at) if t is not None
        )
        age_h = max(0.0, (now - last_used).total_seconds() / 3600.0)
        count = memory.indicators.access_count
        return {
            "relevance": min(1.0, max(0.0, candidate.relevance)),
            "recency": 0.5 ** (age_h / self.recency_half_life_hours),
            "priority": memory.governance.priority,
            "frequency": min(1.0, math.log1p(count) / math.log1p(self.frequency_saturation)),
        }

    def _combine(self, c: dict[str, float]) -> float:
        if self.policy is SchedulerPolicy.SEMANTIC:
            return c["relevance"]
        if self.policy is SchedulerPolicy.LRU:
            return c["recency"]
        if self.policy is SchedulerPolicy.LFU:
            return c["frequency"]
        if self.policy is SchedulerPolicy.PRIORITY:
            return c["priority"]
        w = self.weights
        total = w.relevance + w.recency + w.priority + w.frequency
        return (
            w.relevance * c["relevance"]
            + w.recency * c["recency"]
            + w.priority * c["priority"]
            + w.frequency * c["frequency"]
        ) / total

    def rank(self, candidates: Sequence[Candidate], *, now: datetime) -> list[Scored]:
        """Best first: pinned, then by score, then relevance, then memory id (deterministic)."""
        seen: set[tuple[str, str]] = set()
        scored = []
        for candidate in candidates:
            key = (candidate.memory.cube_id, candidate.memory.memory_id)
            if key in seen:
                continue
            seen.add(key)
            c = self.components(candidate, now=now)
            scored.append(Scored(candidate, self._combine(c), c))
        scored.sort(
            key=lambda s: (
                not s.memory.governance.pinned,
                -s.score,
                -s.components["relevance"],
                s.memory.cube_id,
                s.memory.memory_id,
            )
        )
        return scored

    def schedule(
        self,
        candidates: Sequence[Candidate],
        *,
        budget_tokens: int,
        count_tokens: Callable[[str], int],
        now: datetime,
        max_memories: int | None = None,
    ) -> Schedule:
        chosen: list[Scored] = []
        skipped: list[Scored] = []
        used = 0
        for item in self.rank(candidates, now=now):
            tokens = count_tokens(render_memory(item.candidate.text))
            sized = Scored(item.candidate, item.score, item.components, tokens)
            full = max_memories is not None and len(chosen) >= max_memories
            if full or used + tokens > budget_tokens:
                skipped.append(sized)
                continue
            chosen.append(sized)
            used += tokens
        return Schedule(tuple(chosen), tuple(skipped), budget_tokens, used, self.policy)
