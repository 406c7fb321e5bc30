"""Writes through the API: each becomes one event on the log, answered with where it landed.

A write is checked against the pinned snapshot first (the caller's role in
the cube, that the memory exists and can still change), so that obvious
mistakes are refused with 403/404/409 at once. The fold checks again when the
event is materialised; a write that raced with another (e.g. a memory deleted
meanwhile) is then recorded in the lake's `rejected` table, never half-applied.
"""

from __future__ import annotations

__all__ = ["Commands", "ContentSealer"]

from collections.abc import Callable
from typing import Any

from memlake.errors import (
    MemoryExistsError,
    MemoryNotFoundError,
    MemoryNotWritableError,
    RollbackTargetError,
)
from memlake.events import (
    CubeAclChanged,
    CubeAclChangedPayload,
    CubeCreated,
    CubeCreatedPayload,
    CubePolicyChanged,
    CubePolicyChangedPayload,
    CubeRolledBack,
    CubeRolledBackPayload,
    MemoryAdded,
    MemoryAddedPayload,
    MemoryDeleted,
    MemoryDeletedPayload,
    MemoryUpdated,
    MemoryUpdatedPayload,
    new_event,
)
from memlake.ids import uuid7
from memlake.model import Acl, Actor, Content, Cube, MemoryStatus, Policy, Source
from serving.access_log import EventSink, Receipt
from serving.acl import Action, authorize, readable_memory
from serving.snapshot import ServingSnapshot

# Seals clear text for a subject: (text, subject_id) -> sealed Content.
ContentSealer = Callable[[str, str], Content]
_WRITABLE = frozenset({MemoryStatus.ACTIVE, MemoryStatus.ARCHIVED})


def new_cube_id() -> str:
    """Cube ids are chosen by the service, never by the caller: a caller choosing one could
    probe which ids exist (a conflict would reveal another principal's cube)."""
    return f"cube-{uuid7()}"


def new_memory_id() -> str:
    return f"mem-{uuid7()}"


class Commands:
    def __init__(
        self, sink: EventSink, *, sealer: ContentSealer | None = None, product: str = "memlake-api"
    ) -> None:
        self._sink = sink
        self._sealer = sealer
        self._product = product

    def _source(self, ref: str | None) -> Source:
        return Source(product=self._product, ref=ref)

    def _send(self, event: Any) -> Receipt:
        [receipt] = self._sink.send([event])
        return receipt

    def create_cube(
        self,
        actor: Actor,
        *,
        name: str,
        writers: tuple[str, ...] = (),
        readers: tuple[str, ...] = (),
        policy: Policy | None = None,
        subject_id: str | None = None,
        source_ref: str | None = None,
    ) -> Receipt:
        payload = CubeCreatedPayload(
            name=name,
            owner=actor.principal,
            writers=writers,
            readers=readers,
            policy=policy or Policy(),
            subject_id=subject_id,
        )
        event = new_event(
            CubeCreated, cube_id=new_cube_id(), actor=actor, payload=payload, source=self._source(source_ref)
        )
        return self._send(event)

    def change_policy(self, snapshot: ServingSnapshot, actor: Actor, cube_id: str, policy: Policy) -> Receipt:
        authorize(snapshot, cube_id, actor.principal, Action.CHANGE_POLICY)
        event = new_event(
            CubePolicyChanged,
            cube_id=cube_id,
            actor=actor,
            payload=CubePolicyChangedPayload(policy=policy),
            source=self._source(None),
        )
        return self._send(event)

    def change_acl(self, snapshot: ServingSnapshot, actor: Actor, cube_id: str, acl: Acl) -> Receipt:
        authorize(snapshot, cube_id, actor.principal, Action.CHANGE_ACL)
        event = new_event(
            CubeAclChanged,
            cube_id=cube_id,
            actor=actor,
            payload=CubeAclChangedPayload(acl=acl),
            source=self._source(None),
        )
        return self._send(event)

    def roll_back(
        self, snapshot: ServingSnapshot, actor: Actor, cube_id: str, *, to_version: int, reason: str | None
    ) -> Receipt:
        cube = authorize(snapshot, cube_id, actor.principal, Action.ROLL_BACK)
        if not 1 <= to_version <= cube.version:
            raise RollbackTargetError(cube_id, to_version=to_version, current=cube.version)
        event = new_event(
            CubeRolledBack,
            cube_id=cube_id,
            actor=actor,
            payload=CubeRolledBackPayload(to_version=to_version, reason=reason),
            source=self._source(None),
        )
        return self._send(event)

    def _content(self, cube: Cube, text: str, subject_id: str | None) -> Content:
        if cube.policy.encrypt_content and self._sealer is not None:
            return self._sealer(text, subject_id or cube.subject_id or cube.cube_id)
        return Content(text=text)

    def add_memory(
        self,
        snapshot: ServingSnapshot,
        actor: Actor,
        cube_id: str,
        *,
        memory_id: str | None,
        fields: dict[str, Any],
        text: str | None,
        source_ref: str | None = None,
    ) -> tuple[str, Receipt]:
        cube = authorize(snapshot, cube_id, actor.principal, Action.WRITE)
        memory_id = memory_id or new_memory_id()
        if memory_id in snapshot.shards[cube_id].memories:
            raise MemoryExistsError(cube_id, memory_id)
        data = dict(fields)
        if text is not None:
            data["content"] = self._content(cube, text, data.get("subject_id"))
        event = new_event(
            MemoryAdded,
            cube_id=cube_id,
            memory_id=memory_id,
            actor=actor,
            payload=MemoryAddedPayload.model_validate(data),
            source=self._source(source_ref),
        )
        return memory_id, self._send(event)

    def _writable(self, snapshot: ServingSnapshot, actor: Actor, cube_id: str, memory_id: str) -> Cube:
        cube = authorize(snapshot, cube_id, actor.principal, Action.WRITE)
        memory = snapshot.shards[cube_id].memories.get(memory_id)
        if memory is None or memory.status is MemoryStatus.DELETED:
            raise MemoryNotFoundError(cube_id, memory_id)
        readable_memory(snapshot, cube_id, memory_id, actor.principal)
        if memory.status not in _WRITABLE:
            raise MemoryNotWritableError(cube_id, memory_id, memory.status.value)
        return cube

    def update_memory(
        self,
        snapshot: ServingSnapshot,
        actor: Actor,
        cube_id: str,
        memory_id: str,
        *,
        fields: dict[str, Any],
        text: str | None,
    ) -> Receipt:
        cube = self._writable(snapshot, actor, cube_id, memory_id)
        data = dict(fields)
        if text is not None:
            subject = snapshot.shards[cube_id].memories[memory_id].subject_id
            data["content"] = self._content(cube, text, subject)
        event = new_event(
            MemoryUpdated,
            cube_id=cube_id,
            memory_id=memory_id,
            actor=actor,
            payload=MemoryUpdatedPayload.model_validate(data),
            source=self._source(None),
        )
        return self._send(event)

    def delete_memory(
        self, snapshot: ServingSnapshot, actor: Actor, cube_id: str, memory_id: str, *, reason: str | None
    ) -> Receipt:
        self._writable(snapshot, actor, cube_id, memory_id)
        event = new_event(
            MemoryDeleted,
            cube_id=cube_id,
            memory_id=memory_id,
            actor=actor,
            payload=MemoryDeletedPayload(reason=reason),
            source=self._source(None),
        )
        return self._send(event)
