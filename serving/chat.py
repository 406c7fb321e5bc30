"""Chat with memory: retrieve, schedule under a token budget, build the context, generate.

The last user message is the query. Hybrid retrieval proposes candidates
from the cubes the caller may read; the cubes' pinned memories join them;
the scheduler ranks them and fits them into the token budget (counted with
the generator's own tokenizer); the chosen memories go into one system
message ahead of the conversation. The memories used are returned with the
answer, and reported as read (`memory.accessed`).
"""

from __future__ import annotations

__all__ = ["ChatService", "ChatPlan", "DEFAULT_SYSTEM_PROMPT"]

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from memlake.model import MemoryKind
from serving.filters import MemoryFilter
from serving.generation import ChatMessage, Completion, Generator
from serving.retrieval import HybridRetriever
from serving.scheduler import Candidate, MemScheduler, Schedule, SchedulerPolicy, render_memory
from serving.snapshot import ServingSnapshot

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant with a memory. Use the memories below when they help answer; "
    "if they do not cover the question, say what you do not know."
)


@dataclass(frozen=True, slots=True)
class ChatPlan:
    messages: tuple[ChatMessage, ...]
    schedule: Schedule
    snapshot_version: int
    query: str
    timings_ms: dict[str, float]


class ChatService:
    def __init__(
        self,
        retriever: HybridRetriever,
        scheduler: MemScheduler,
        generator: Generator,
        *,
        candidates: int = 50,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    ) -> None:
        self._retriever = retriever
        self._scheduler = scheduler
        self._generator = generator
        self._candidates = candidates
        self._system_prompt = system_prompt

    @property
    def generator(self) -> Generator:
        return self._generator

    def plan(
        self,
        snapshot: ServingSnapshot,
        *,
        principal: str,
        cube_ids: Sequence[str],
        messages: Sequence[ChatMessage],
        token_budget: int,
        now: datetime,
        policy: SchedulerPolicy | None = None,
        memory_filter: MemoryFilter | None = None,
    ) -> ChatPlan:
        query = next((m.content for m in reversed(messages) if m.role == "user"), "")
        memory_filter = memory_filter or MemoryFilter(kinds=frozenset({MemoryKind.PLAINTEXT}))
        t0 = time.perf_counter()
        result = self._retriever.search(
            snapshot,
            principal=principal,
            cube_ids=cube_ids,
            query=query,
            top_k=self._candidates,
            memory_filter=memory_filter,
            now=now,
        )
        t1 = time.perf_counter()
        candidates = [
            Candidate(hit.memory, hit.text, hit.relevance)
            for hit in result.hits
            if hit.memory.kind is MemoryKind.PLAINTEXT
        ]
        for cube_id in dict.fromkeys(cube_ids):
            shard = snapshot.shards.get(cube_id)
            if shard is None:
                continue
            for memory_id in shard.pinned:
                memory = shard.memories[memory_id]
                if (
                    memory.kind is MemoryKind.PLAINTEXT
                    and memory_filter.matches(memory, now=now)
                    and memory.readable_by(principal, shard.cube.acl)
                ):
                    candidates.append(Candidate(memory, shard.texts[memory_id], 0.0))
        scheduler = self._scheduler
        if policy is not None and policy is not scheduler.policy:
            scheduler = MemScheduler(
                policy=policy,
                weights=scheduler.weights,
                recency_half_life_hours=scheduler.recency_half_life_hours,
                frequency_saturation=scheduler.frequency_saturation,
            )
        schedule = scheduler.schedule(
            candidates, budget_tokens=token_budget, count_tokens=self._generator.count_tokens, now=now
        )
        t2 = time.perf_counter()
        return ChatPlan(
            messages=tuple(self._context(schedule, messages)),
            schedule=schedule,
            snapshot_version=snapshot.version,
            query=query,
            timings_ms={**result.timings_ms, "retrieve": (t1 - t0) * 1000, "schedule": (t2 - t1) * 1000},
        )

    def _context(self, schedule: Schedule, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        # The caller's own system messages stay first; memories follow as one more.
        own_system = [m.content for m in messages if m.role == "system"]
        parts = [*own_system, self._system_prompt]
        if schedule.chosen:
            parts.append("Memories:\n" + "".join(render_memory(s.candidate.text) for s in schedule.chosen))
        else:
            parts.append("Memories: none relevant.")
        return [ChatMessage("system", "\n\n".join(parts)), *(m for m in messages if m.role != "system")]

    def answer(self, plan: ChatPlan, *, max_new_tokens: int, temperature: float = 0.0) -> Completion:
        return self._generator.generate(plan.messages, max_new_tokens=max_new_tokens, temperature=temperature)

    def stream(self, plan: ChatPlan, *, max_new_tokens: int, temperature: float = 0.0) -> Iterator[str]:
        return self._generator.stream(plan.messages, max_new_tokens=max_new_tokens, temperature=temperature)
