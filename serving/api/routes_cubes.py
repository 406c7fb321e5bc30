"""/v1/cubes: create, read, list, change policy and ACL, versions, as-of, diff, roll back."""

from __future__ import annotations

__all__ = ["router", "ERRORS", "write_out"]

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from memlake.model import Acl, Memory
from serving.access_log import Receipt
from serving.acl import Action, authorize, readable_cube
from serving.api.deps import CallerDep, ComponentsDep, ConsistencyDep
from serving.api.schemas import (
    AclChange,
    CubeAsOfOut,
    CubeCreate,
    CubeDiffOut,
    CubeListOut,
    CubeOut,
    CubeVersionOut,
    CubeVersionsOut,
    ErrorOut,
    MemoryChangeOut,
    MemoryOut,
    PolicyChange,
    RollbackIn,
    WriteOut,
    cube_out,
    memory_out,
)
from serving.components import Components
from serving.snapshot import ServingSnapshot

ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "No API key, or an unknown or revoked one."},
    403: {"model": ErrorOut, "description": "The caller may read the cube but not do this."},
    404: {"model": ErrorOut, "description": "No such cube, or one the caller may not read."},
    422: {"model": ErrorOut, "description": "The request is invalid or over a limit."},
    503: {"model": ErrorOut, "description": "A dependency is unavailable, or a wait timed out."},
}

router = APIRouter(prefix="/v1/cubes", tags=["cubes"], responses=ERRORS)


def write_out(receipt: Receipt, *, memory_id: str | None = None) -> WriteOut:
    return WriteOut(
        event_id=receipt.event_id,
        cube_id=receipt.cube_id,
        memory_id=memory_id,
        topic=receipt.topic,
        partition=receipt.partition,
        offset=receipt.offset,
    )


def visible_memories(
    components: Components, snapshot: ServingSnapshot | None, memories: list[Memory], principal: str, acl: Acl
) -> list[MemoryOut]:
    return [memory_out(m, components.text_of(snapshot, m)) for m in memories if m.readable_by(principal, acl)]


@router.post("", status_code=202, response_model=WriteOut, summary="Create a cube owned by the caller")
def create_cube(body: CubeCreate, components: ComponentsDep, caller: CallerDep) -> WriteOut:
    receipt = components.commands.create_cube(
        caller.actor,
        name=body.name,
        writers=tuple(body.writers),
        readers=tuple(body.readers),
        policy=body.policy,
        subject_id=body.subject_id,
    )
    return write_out(receipt)


@router.get("", response_model=CubeListOut, summary="The cubes the caller may read")
def list_cubes(components: ComponentsDep, caller: CallerDep, consistency: ConsistencyDep) -> CubeListOut:
    with components.snapshot_for(
        consistency=consistency.consistency, wait_for=consistency.wait_for, timeout_s=consistency.timeout_s
    ) as snapshot:
        cubes = [
            cube_out(shard.cube, snapshot_version=snapshot.version, memory_count=len(shard.memories))
            for cube_id, shard in sorted(snapshot.shards.items())
            if shard.cube.acl.can_read(caller.principal)
        ]
        return CubeListOut(cubes=cubes, snapshot_version=snapshot.version)


@router.get("/{cube_id}", response_model=CubeOut, summary="One cube")
def get_cube(
    cube_id: str, components: ComponentsDep, caller: CallerDep, consistency: ConsistencyDep
) -> CubeOut:
    with components.snapshot_for(
        consistency=consistency.consistency, wait_for=consistency.wait_for, timeout_s=consistency.timeout_s
    ) as snapshot:
        cube = readable_cube(snapshot, cube_id, caller.principal)
        return cube_out(
            cube, snapshot_version=snapshot.version, memory_count=len(snapshot.shards[cube_id].memories)
        )


@router.put(
    "/{cube_id}/policy", status_code=202, response_model=WriteOut, summary="Change the policy (owner)"
)
def change_policy(cube_id: str, body: PolicyChange, components: ComponentsDep, caller: CallerDep) -> WriteOut:
    with components.snapshot_for() as snapshot:
        return write_out(components.commands.change_policy(snapshot, caller.actor, cube_id, body.policy))


@router.put("/{cube_id}/acl", status_code=202, response_model=WriteOut, summary="Replace the ACL (owner)")
def change_acl(cube_id: str, body: AclChange, components: ComponentsDep, caller: CallerDep) -> WriteOut:
    with components.snapshot_for() as snapshot:
        cube = authorize(snapshot, cube_id, caller.principal, Action.CHANGE_ACL)
        acl = Acl(
            owner=body.owner or cube.acl.owner, writers=tuple(body.writers), readers=tuple(body.readers)
        )
        return write_out(components.commands.change_acl(snapshot, caller.actor, cube_id, acl))


@router.post("/{cube_id}/rollback", status_code=202, response_model=WriteOut, summary="Roll the cube back")
def roll_back(cube_id: str, body: RollbackIn, components: ComponentsDep, caller: CallerDep) -> WriteOut:
    with components.snapshot_for() as snapshot:
        receipt = components.commands.roll_back(
            snapshot, caller.actor, cube_id, to_version=body.to_version, reason=body.reason
        )
        return write_out(receipt)


@router.get(
    "/{cube_id}/versions", response_model=CubeVersionsOut, summary="The cube's versions, oldest first"
)
def list_versions(
    cube_id: str,
    components: ComponentsDep,
    caller: CallerDep,
    after_version: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> CubeVersionsOut:
    with components.snapshot_for() as snapshot:
        readable_cube(snapshot, cube_id, caller.principal)
    rows = components.history.versions(cube_id, after_version=after_version, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return CubeVersionsOut(
        cube_id=cube_id,
        versions=[CubeVersionOut.model_validate(row, from_attributes=True) for row in rows],
        next_after_version=rows[-1].version if more and rows else None,
    )


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@router.get("/{cube_id}/as-of", response_model=CubeAsOfOut, summary="The cube at a version or a time")
def as_of(
    cube_id: str,
    components: ComponentsDep,
    caller: CallerDep,
    version: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    timestamp: Annotated[datetime | None, Query(description="ISO 8601; UTC when no offset is given.")] = None,
) -> CubeAsOfOut:
    if (version is None) == (timestamp is None):
        raise RequestValidationError(
            [
                {
                    "loc": ("query", "version"),
                    "msg": "give exactly one of version or timestamp",
                    "type": "value_error",
                }
            ]
        )
    with components.snapshot_for() as snapshot:
        cube = readable_cube(snapshot, cube_id, caller.principal)
    view = components.history.as_of(
        cube_id, version=version, timestamp=_utc(timestamp) if timestamp is not None else None
    )
    # The ACL in force now decides: a reader revoked since then stays revoked.
    memories = sorted(view.memories.values(), key=lambda m: m.memory_id)
    return CubeAsOfOut(
        cube=cube_out(view.cube, snapshot_version=snapshot.version) if view.cube is not None else None,
        version=view.version,
        memories=visible_memories(components, None, memories, caller.principal, cube.acl),
    )


@router.get("/{cube_id}/diff", response_model=CubeDiffOut, summary="What changed between two versions")
def diff(
    cube_id: str,
    components: ComponentsDep,
    caller: CallerDep,
    from_version: Annotated[int, Query(ge=1, le=2**62)],
    to_version: Annotated[int, Query(ge=1, le=2**62)],
) -> CubeDiffOut:
    with components.snapshot_for() as snapshot:
        cube = readable_cube(snapshot, cube_id, caller.principal)
    changes = components.history.diff(cube_id, from_version, to_version)
    principal, acl = caller.principal, cube.acl
    return CubeDiffOut(
        cube_id=cube_id,
        from_version=changes.from_version,
        to_version=changes.to_version,
        added=visible_memories(components, None, list(changes.added), principal, acl),
        removed=visible_memories(components, None, list(changes.removed), principal, acl),
        changed=[
            MemoryChangeOut(
                memory_id=c.memory_id,
                fields=list(c.fields),
                before=memory_out(c.before, components.text_of(None, c.before)),
                after=memory_out(c.after, components.text_of(None, c.after)),
            )
            for c in changes.changed
            if c.after.readable_by(principal, acl) and c.before.readable_by(principal, acl)
        ],
        cube_fields=list(changes.cube_fields),
    )
