"""/v1/cubes/{cube_id}/memories: add, update, delete (events), read, list, history, lineage."""

from __future__ import annotations

__all__ = ["router"]

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from memlake.model import MemoryKind, MemoryStatus
from serving.acl import readable_cube, readable_memory
from serving.api.deps import CallerDep, ComponentsDep, ConsistencyDep
from serving.api.routes_cubes import ERRORS, write_out
from serving.api.schemas import (
    LineageOut,
    MemoryCreate,
    MemoryHistoryOut,
    MemoryListOut,
    MemoryOut,
    MemoryUpdate,
    MemoryVersionOut,
    WriteOut,
    memory_out,
)
from serving.filters import MemoryFilter

router = APIRouter(prefix="/v1/cubes/{cube_id}/memories", tags=["memories"], responses=ERRORS)

MemoryId = Annotated[str, Query(max_length=128)]


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@router.post("", status_code=202, response_model=WriteOut, summary="Add a memory (a memory.added event)")
def add_memory(cube_id: str, body: MemoryCreate, components: ComponentsDep, caller: CallerDep) -> WriteOut:
    fields: dict[str, Any] = body.model_dump(
        exclude={"memory_id", "text", "source_ref"}, exclude_unset=True, mode="python"
    )
    fields["kind"] = body.kind
    with components.snapshot_for() as snapshot:
        memory_id, receipt = components.commands.add_memory(
            snapshot,
            caller.actor,
            cube_id,
            memory_id=body.memory_id,
            fields=fields,
            text=body.text,
            source_ref=body.source_ref,
        )
    return write_out(receipt, memory_id=memory_id)


@router.get("", response_model=MemoryListOut, summary="List memories, with filters")
def list_memories(
    cube_id: str,
    *,
    components: ComponentsDep,
    caller: CallerDep,
    consistency: ConsistencyDep,
    kind: Annotated[list[MemoryKind], Query(max_length=3)] = [],  # noqa: B006
    tag: Annotated[list[Annotated[str, Query(min_length=1, max_length=128)]], Query(max_length=64)] = [],  # noqa: B006
    memory_type: Annotated[list[Annotated[str, Query(max_length=64)]], Query(max_length=32)] = [],  # noqa: B006
    status: Annotated[list[MemoryStatus], Query(max_length=6)] = [],  # noqa: B006
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(max_length=128, description="next_cursor of the previous page")
    ] = None,
) -> MemoryListOut:
    with components.snapshot_for(
        consistency=consistency.consistency, wait_for=consistency.wait_for, timeout_s=consistency.timeout_s
    ) as snapshot:
        cube = readable_cube(snapshot, cube_id, caller.principal)
        shard = snapshot.shards[cube_id]
        # Listing shows every lifecycle state that was asked for (default: active), as the
        # lake records it; the retrieval filter's shape part narrows kind, tags, type and time.
        wanted_status = set(status) or {MemoryStatus.ACTIVE}
        shape = MemoryFilter(
            kinds=frozenset(kind),
            tags_any=frozenset(tag),
            memory_types=frozenset(memory_type),
            created_after=_utc(created_after),
            created_before=_utc(created_before),
            statuses=frozenset({MemoryStatus.ACTIVE, MemoryStatus.ARCHIVED}),
        )
        out: list[MemoryOut] = []
        next_cursor = None
        for memory_id in sorted(shard.memories):
            if cursor is not None and memory_id <= cursor:
                continue
            memory = shard.memories[memory_id]
            if memory.status not in wanted_status or not memory.readable_by(caller.principal, cube.acl):
                continue
            if not shape.matches_shape(memory):
                continue
            if len(out) == limit:
                next_cursor = out[-1].memory_id
                break
            out.append(memory_out(memory, components.text_of(snapshot, memory)))
        return MemoryListOut(memories=out, next_cursor=next_cursor, snapshot_version=snapshot.version)


@router.get("/{memory_id}", response_model=MemoryOut, summary="One memory")
def get_memory(
    cube_id: str, memory_id: str, components: ComponentsDep, caller: CallerDep, consistency: ConsistencyDep
) -> MemoryOut:
    with components.snapshot_for(
        consistency=consistency.consistency, wait_for=consistency.wait_for, timeout_s=consistency.timeout_s
    ) as snapshot:
        memory = readable_memory(snapshot, cube_id, memory_id, caller.principal)
        return memory_out(memory, components.text_of(snapshot, memory))


@router.patch("/{memory_id}", status_code=202, response_model=WriteOut, summary="Update a memory")
def update_memory(
    cube_id: str, memory_id: str, body: MemoryUpdate, components: ComponentsDep, caller: CallerDep
) -> WriteOut:
    fields = body.model_dump(exclude={"text"}, exclude_unset=True, mode="python")
    with components.snapshot_for() as snapshot:
        receipt = components.commands.update_memory(
            snapshot, caller.actor, cube_id, memory_id, fields=fields, text=body.text
        )
    return write_out(receipt, memory_id=memory_id)


@router.delete("/{memory_id}", status_code=202, response_model=WriteOut, summary="Delete a memory")
def delete_memory(
    cube_id: str,
    memory_id: str,
    components: ComponentsDep,
    caller: CallerDep,
    reason: Annotated[str | None, Query(max_length=1024)] = None,
) -> WriteOut:
    with components.snapshot_for() as snapshot:
        receipt = components.commands.delete_memory(snapshot, caller.actor, cube_id, memory_id, reason=reason)
    return write_out(receipt, memory_id=memory_id)


@router.get("/{memory_id}/history", response_model=MemoryHistoryOut, summary="Every version of a memory")
def memory_history(
    cube_id: str, memory_id: str, components: ComponentsDep, caller: CallerDep
) -> MemoryHistoryOut:
    with components.snapshot_for() as snapshot:
        readable_memory(snapshot, cube_id, memory_id, caller.principal)
    versions = components.history.memory_history(cube_id, memory_id)
    return MemoryHistoryOut(
        cube_id=cube_id,
        memory_id=memory_id,
        versions=[
            MemoryVersionOut(
                memory=memory_out(v.memory, components.text_of(None, v.memory)),
                event_id=v.event_id,
                event_type=v.event_type,
            )
            for v in versions
        ],
    )


@router.get(
    "/{memory_id}/lineage", response_model=LineageOut, summary="What a memory was made from, and what from it"
)
def memory_lineage(cube_id: str, memory_id: str, components: ComponentsDep, caller: CallerDep) -> LineageOut:
    with components.snapshot_for() as snapshot:
        readable_memory(snapshot, cube_id, memory_id, caller.principal)
        cube = snapshot.shards[cube_id].cube
        derived = [
            memory_out(m, components.text_of(snapshot, m))
            for m in snapshot.shards[cube_id].memories.values()
            if any(ref.memory_id == memory_id for ref in m.header.lineage)
            and m.readable_by(caller.principal, cube.acl)
        ]
    return LineageOut(
        cube_id=cube_id,
        memory_id=memory_id,
        lineage=components.history.lineage(cube_id, memory_id),
        derived=derived,
    )
