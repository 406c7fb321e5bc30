"""Access checks of the serving tier, on top of the cube ACL and memory-level visibility.

Rules (docs/serving.md has the matrix):
- a principal that cannot read a cube gets `CubeNotFoundError` for it, exactly
  as if it did not exist: a stranger learns nothing, not even existence;
- a reader asking for more than reading gets `PermissionDeniedError`;
- a memory a reader may not see (private, or a readers override without them)
  is `MemoryNotFoundError`, like a missing one.
"""

from __future__ import annotations

__all__ = ["Action", "readable_cube", "authorize", "readable_memory", "readable_cubes"]

from collections.abc import Sequence
from enum import StrEnum

from memlake.errors import CubeNotFoundError, MemoryNotFoundError, PermissionDeniedError
from memlake.model import Cube, Memory
from serving.snapshot import ServingSnapshot


class Action(StrEnum):
    READ = "read"
    WRITE = "write memories"
    CHANGE_POLICY = "change the policy"
    CHANGE_ACL = "change the ACL"
    ROLL_BACK = "roll back"


def readable_cube(snapshot: ServingSnapshot, cube_id: str, principal: str) -> Cube:
    cube = snapshot.cube(cube_id)
    if cube is None or not cube.acl.can_read(principal):
        raise CubeNotFoundError(cube_id)
    return cube


def authorize(snapshot: ServingSnapshot, cube_id: str, principal: str, action: Action) -> Cube:
    """The cube, if `principal` may do `action` in it (404 for strangers, 403 for the rest)."""
    cube = readable_cube(snapshot, cube_id, principal)
    acl = cube.acl
    if action is Action.READ:
        allowed = True
    elif action is Action.WRITE:
        allowed = acl.can_write(principal)
    elif action is Action.ROLL_BACK:
        allowed = acl.grants(principal, cube.policy.rollback_by)
    else:
        allowed = acl.is_owner(principal)
    if not allowed:
        raise PermissionDeniedError(cube_id, principal=principal, action=action.value)
    return cube


def readable_memory(snapshot: ServingSnapshot, cube_id: str, memory_id: str, principal: str) -> Memory:
    cube = readable_cube(snapshot, cube_id, principal)
    shard = snapshot.shards[cube_id]
    memory = shard.memories.get(memory_id)
    if memory is None or not memory.readable_by(principal, cube.acl):
        raise MemoryNotFoundError(cube_id, memory_id)
    return memory


def readable_cubes(snapshot: ServingSnapshot, cube_ids: Sequence[str], principal: str) -> list[Cube]:
    """Every cube asked for, each readable, or `CubeNotFoundError` for the first that is not."""
    return [readable_cube(snapshot, cube_id, principal) for cube_id in dict.fromkeys(cube_ids)]
