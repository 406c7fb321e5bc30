"""/v1/search and /v1/chat: hybrid retrieval, and answers generated with scheduled memories."""

from __future__ import annotations

__all__ = ["router", "check_limits", "to_filter"]

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from memlake.errors import GenerationError, LimitExceededError
from memlake.model import MemoryKind, MemoryStatus, utcnow
from serving.acl import readable_cubes
from serving.api.deps import CallerDep, ComponentsDep, RequestIdDep
from serving.api.routes_cubes import ERRORS
from serving.api.schemas import (
    ChatIn,
    ChatOut,
    ParametricOut,
    SearchFilters,
    SearchHitOut,
    SearchIn,
    SearchOut,
    UsedMemoryOut,
    memory_out,
)
from serving.chat import ChatPlan, streamed_use
from serving.components import Components
from serving.filters import MemoryFilter
from serving.generation import ChatMessage
from serving.parametric import ParametricUse
from serving.scheduler import SchedulerPolicy

router = APIRouter(prefix="/v1", tags=["retrieval"], responses=ERRORS)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def to_filter(filters: SearchFilters, *, plaintext_only: bool = False) -> MemoryFilter:
    kinds = frozenset(filters.kinds)
    if plaintext_only:
        kinds = frozenset({MemoryKind.PLAINTEXT})
    return MemoryFilter(
        kinds=kinds,
        tags_any=frozenset(filters.tags_any),
        tags_all=frozenset(filters.tags_all),
        memory_types=frozenset(filters.memory_types),
        created_after=_utc(filters.created_after),
        created_before=_utc(filters.created_before),
        statuses=frozenset(MemoryStatus(s) for s in filters.statuses),
    )


def check_limits(
    components: Components, *, query_chars: Sequence[int] = (), cubes: int = 0, top_k: int = 0
) -> None:
    s = components.settings.serving
    for chars in query_chars:
        if chars > s.max_query_chars:
            raise LimitExceededError("query", limit=s.max_query_chars, actual=chars)
    if cubes > s.max_cubes_per_request:
        raise LimitExceededError("cube_ids", limit=s.max_cubes_per_request, actual=cubes)
    if top_k > s.max_top_k:
        raise LimitExceededError("top_k", limit=s.max_top_k, actual=top_k)


@router.post("/search", response_model=SearchOut, summary="Hybrid search over readable cubes")
def search(
    body: SearchIn, request: Request, components: ComponentsDep, caller: CallerDep, rid: RequestIdDep
) -> SearchOut:
    check_limits(components, query_chars=[len(body.query)], cubes=len(body.cube_ids), top_k=body.top_k)
    memory_filter = to_filter(body.filters)
    positions = [(p.partition, p.offset) for p in body.wait_for]
    with components.snapshot_for(
        consistency=body.consistency, wait_for=positions, timeout_s=body.timeout_s
    ) as snapshot:
        readable_cubes(snapshot, body.cube_ids, caller.principal)
        result = components.retriever.search(
            snapshot,
            principal=caller.principal,
            cube_ids=body.cube_ids,
            query=body.query,
            top_k=body.top_k,
            memory_filter=memory_filter,
            now=utcnow(),
            mode=body.mode,
        )
        hits = [
            SearchHitOut(
                memory=memory_out(hit.memory, hit.text),
                score=hit.score,
                relevance=hit.relevance,
                similarity=hit.similarity,
                lexical_score=hit.lexical_score,
                ranks=hit.ranks,
            )
            for hit in result.hits
        ]
    metrics = request.app.state.metrics
    for stage, ms in result.timings_ms.items():
        metrics.search_stage.labels(stage).observe(ms / 1000)
    if result.hits:
        components.recorder.record(
            caller.actor,
            [(h.memory.cube_id, h.memory.memory_id) for h in result.hits],
            request_kind="search",
            request_id=rid,
        )
    return SearchOut(hits=hits, snapshot_version=result.snapshot_version, timings_ms=result.timings_ms)


def plan_chat(
    components: Components,
    caller_principal: str,
    *,
    cube_ids: Sequence[str],
    messages: Sequence[ChatMessage],
    token_budget: int | None,
    consistency: str = "snapshot",
    wait_for: Sequence[tuple[int, int]] = (),
    timeout_s: float | None = None,
    policy: SchedulerPolicy | None = None,
) -> ChatPlan:
    s = components.settings.serving
    check_limits(
        components, query_chars=[len(m.content) for m in messages if m.role == "user"], cubes=len(cube_ids)
    )
    with components.snapshot_for(consistency=consistency, wait_for=wait_for, timeout_s=timeout_s) as snapshot:
        readable_cubes(snapshot, cube_ids, caller_principal)
        return components.chat.plan(
            snapshot,
            principal=caller_principal,
            cube_ids=cube_ids,
            messages=messages,
            token_budget=s.context_token_budget if token_budget is None else token_budget,
            now=utcnow(),
            policy=policy,
        )


def max_new_tokens(components: Components, asked: int | None) -> int:
    ceiling = components.settings.serving.chat_max_new_tokens
    if asked is not None and asked > ceiling:
        raise LimitExceededError("max_new_tokens", limit=ceiling, actual=asked)
    return asked or ceiling


def used_memories(plan: ChatPlan) -> list[UsedMemoryOut]:
    return [
        UsedMemoryOut(
            cube_id=s.memory.cube_id,
            memory_id=s.memory.memory_id,
            version=s.memory.version,
            text=s.candidate.text,
            score=s.score,
            relevance=s.components["relevance"],
            tokens=s.tokens,
        )
        for s in plan.schedule.chosen
    ]


def _sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


@router.post(
    "/chat",
    response_model=ChatOut,
    summary="Answer with the cubes' memories (stream=true: server-sent events)",
    responses={200: {"content": {"text/event-stream": {}}}},
)
def chat(
    body: ChatIn, components: ComponentsDep, caller: CallerDep, rid: RequestIdDep, response: Response
) -> ChatOut | StreamingResponse:
    tokens = max_new_tokens(components, body.max_new_tokens)
    messages = [ChatMessage(m.role, m.content) for m in body.messages]
    plan = plan_chat(
        components,
        caller.principal,
        cube_ids=body.cube_ids,
        messages=messages,
        token_budget=body.token_budget,
        consistency=body.consistency,
        wait_for=[(p.partition, p.offset) for p in body.wait_for],
        timeout_s=body.timeout_s,
        policy=body.policy,
    )
    used = used_memories(plan)
    if used:
        components.recorder.record(
            caller.actor, [(u.cube_id, u.memory_id) for u in used], request_kind="chat", request_id=rid
        )
    if body.stream:

        def events() -> Iterator[str]:
            yield _sse(
                "memories",
                {
                    "snapshot_version": plan.snapshot_version,
                    "memories_used": [u.model_dump(mode="json") for u in used],
                },
            )
            pieces = components.chat.stream(plan, max_new_tokens=tokens, temperature=body.temperature)
            try:
                for piece in pieces:
                    yield _sse("token", {"text": piece})
            except GenerationError as e:
                yield _sse("error", {"type": "generation_failed", "message": str(e)})
                return
            yield _sse(
                "done",
                {
                    "snapshot_version": plan.snapshot_version,
                    "model": components.chat.generator.model_name,
                    "parametric": ParametricUse.describe(streamed_use(pieces)),
                },
            )

        return StreamingResponse(events(), media_type="text/event-stream", headers={"X-Request-Id": rid})
    completion = components.chat.answer(plan, max_new_tokens=tokens, temperature=body.temperature)
    parametric = ParametricUse.describe(completion.parametric)
    response.headers["X-Memlake-Adapter"] = parametric["adapter"] or "none"
    return ChatOut(
        answer=completion.text,
        memories_used=used,
        snapshot_version=plan.snapshot_version,
        model=completion.model,
        finish_reason=completion.finish_reason,
        usage={"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens},
        timings_ms=plan.timings_ms,
        parametric=ParametricOut.model_validate(parametric),
    )
