"""Chat with memory: retrieve, schedule under a token budget, build the context, generate.

The last user message is the query. Hybrid retrieval proposes candidates
from the cubes the caller may read; the cubes' pinned memories join them;
the scheduler ranks them and fits them into the token budget (counted with
the generator's own tokenizer); the chosen memories go into one system
message ahead of the conversation. The memories used are returned with the
answer, and reported as read (`memory.accessed`).

With the local generator, the first cube's activation and parametric memory
join in (`serving.parametric`): when the cube has a KV cache the generator
may reuse (same base model, every encoded memory unchanged and readable by
the caller), the prompt starts with the cached prefix, which already lists
those memories, so they are not scheduled again and the system message
continues the cached one; and the cube's champion adapter, if any, answers.
The cached memories count as used, and are reported as read like the others.
"""

from __future__ import annotations

__all__ = ["ChatService", "ChatPlan", "DEFAULT_SYSTEM_PROMPT", "streamed_use"]

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from memlake.model import MemoryKind
from serving.filters import MemoryFilter
from serving.generation import AnswerStream, ChatMessage, Completion, Generator, ParametricGenerator
from serving.parametric import ParametricRequest, ParametricUse, StoredPrefix, choose_activation
from serving.retrieval import HybridRetriever
from serving.scheduler import Candidate, MemScheduler, Schedule, SchedulerPolicy, Scored, render_memory
from serving.snapshot import ServingSnapshot

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant with a memory. Use the memories below when they help answer; "
    "if they do not cover the question, say what you do not know."
)


@dataclass(frozen=True, slots=True)
class ChatPlan:
    messages: tuple[ChatMessage, ...]  # with `prefix`: what follows the cached prefix
    schedule: Schedule
    snapshot_version: int
    query: str
    timings_ms: dict[str, float]
    parametric: ParametricRequest | None = None  # the first cube's adapter and KV cache (local generator)


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
        primary, prefix, kv_reason, cached = self._activation(snapshot, principal, cube_ids)
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
            and (hit.memory.cube_id, hit.memory.memory_id) not in cached
        ]
        for cube_id in dict.fromkeys(cube_ids):
            shard = snapshot.shards.get(cube_id)
            if shard is None:
                continue
            for memory_id in shard.pinned:
                memory = shard.memories[memory_id]
                if (
                    (cube_id, memory_id) not in cached
                    and memory.kind is MemoryKind.PLAINTEXT
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
        context = self._context(schedule, messages, continues_prefix=prefix is not None)
        if cached:
            schedule = dataclasses.replace(schedule, chosen=(*cached.values(), *schedule.chosen))
        t2 = time.perf_counter()
        return ChatPlan(
            messages=tuple(context),
            schedule=schedule,
            snapshot_version=snapshot.version,
            query=query,
            timings_ms={**result.timings_ms, "retrieve": (t1 - t0) * 1000, "schedule": (t2 - t1) * 1000},
            parametric=None
            if primary is None
            else ParametricRequest(cube_id=primary, prefix=prefix, no_prefix_reason=kv_reason),
        )

    def _activation(
        self, snapshot: ServingSnapshot, principal: str, cube_ids: Sequence[str]
    ) -> tuple[str | None, StoredPrefix | None, str | None, dict[tuple[str, str], Scored]]:
        """(first cube, its reusable KV cache, why none, the memories that cache holds, as used)."""
        if not isinstance(self._generator, ParametricGenerator) or not cube_ids:
            return None, None, None, {}
        cube_id = cube_ids[0]
        choice = choose_activation(snapshot, cube_id=cube_id, principal=principal)
        prefix, reason = self._generator.prefix_cache(choice)
        if prefix is None or choice.memory is None:
            return cube_id, None, reason, {}
        shard = snapshot.shards[cube_id]
        cached: dict[tuple[str, str], Scored] = {}
        for ref in choice.memory.header.lineage:
            text = shard.texts.get(ref.memory_id, "")
            cached[(cube_id, ref.memory_id)] = Scored(
                Candidate(shard.memories[ref.memory_id], text),
                score=1.0,  # in the prompt whatever the query: the cache holds it
                components={"relevance": 0.0, "kv_cache": 1.0},
                tokens=self._generator.count_tokens(text),
            )
        return cube_id, prefix, None, cached

    def _context(
        self, schedule: Schedule, messages: Sequence[ChatMessage], *, continues_prefix: bool
    ) -> list[ChatMessage]:
        own_system = [m.content for m in messages if m.role == "system"]
        conversation = [m for m in messages if m.role != "system"]
        if continues_prefix:
            # The cached prefix opens the system turn (its prompt and memories); this continues it.
            parts = [*own_system]
            if schedule.chosen:
                parts.append(
                    "More memories:\n" + "".join(render_memory(s.candidate.text) for s in schedule.chosen)
                )
            return [ChatMessage("system", "".join(f"\n\n{p}" for p in parts)), *conversation]
        # The caller's own system messages stay first; memories follow as one more.
        parts = [*own_system, self._system_prompt]
        if schedule.chosen:
            parts.append("Memories:\n" + "".join(render_memory(s.candidate.text) for s in schedule.chosen))
        else:
            parts.append("Memories: none relevant.")
        return [ChatMessage("system", "\n\n".join(parts)), *conversation]

    def answer(
        self, plan: ChatPlan, *, max_new_tokens: int, temperature: float = 0.0, reuse_prefix: bool = True
    ) -> Completion:
        """The answer; `reuse_prefix=False` recomputes a cached prefix (same prompt, for comparison)."""
        if plan.parametric is None or not isinstance(self._generator, ParametricGenerator):
            return self._generator.generate(
                plan.messages, max_new_tokens=max_new_tokens, temperature=temperature
            )
        request = dataclasses.replace(plan.parametric, reuse_prefix=reuse_prefix)
        return self._generator.generate(
            plan.messages, max_new_tokens=max_new_tokens, temperature=temperature, parametric=request
        )

    def stream(self, plan: ChatPlan, *, max_new_tokens: int, temperature: float = 0.0) -> Iterator[str]:
        """Text pieces; with the local generator an `AnswerStream`, whose `parametric` is set at the end."""
        if plan.parametric is None or not isinstance(self._generator, ParametricGenerator):
            return self._generator.stream(
                plan.messages, max_new_tokens=max_new_tokens, temperature=temperature
            )
        return self._generator.stream(
            plan.messages, max_new_tokens=max_new_tokens, temperature=temperature, parametric=plan.parametric
        )


def streamed_use(pieces: Iterator[str]) -> ParametricUse | None:
    """What answered a finished stream from `ChatService.stream` (None: not the local generator)."""
    return pieces.parametric if isinstance(pieces, AnswerStream) else None
