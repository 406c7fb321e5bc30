"""Small builders of valid events for the kernel's tests (pure values, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from memlake.events import (
    CubeAclChanged,
    CubeCreated,
    CubePolicyChanged,
    CubeRolledBack,
    Event,
    MemoryAccessed,
    MemoryAdded,
    MemoryArchived,
    MemoryDeleted,
    MemoryExpired,
    MemoryMerged,
    MemoryTransformed,
    MemoryUpdated,
    SubjectErased,
    new_event,
)
from memlake.model import Actor, ActorKind

CUBE = "cube-1"
OWNER = Actor(kind=ActorKind.USER, id="alice")
WRITER = Actor(kind=ActorKind.AGENT, id="helper")
READER = Actor(kind=ActorKind.USER, id="bob")
STRANGER = Actor(kind=ActorKind.USER, id="mallory")
SYSTEM = Actor(kind=ActorKind.SYSTEM, id="consolidate")
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    """Hands out strictly increasing event times, one second apart."""

    def __init__(self, start: datetime = T0) -> None:
        self._now = start

    def __call__(self) -> datetime:
        self._now += timedelta(seconds=1)
        return self._now


def _event(
    cls: Any,
    payload: dict[str, Any],
    *,
    memory_id: str | None = None,
    actor: Actor = OWNER,
    at: datetime = T0,
    cube_id: str = CUBE,
    expected_version: int | None = None,
) -> Event:
    return new_event(
        cls,
        cube_id=cube_id,
        actor=actor,
        payload=payload,
        memory_id=memory_id,
        occurred_at=at,
        expected_version=expected_version,
    )


def created(*, at: datetime = T0, subject_id: str | None = None, **policy: Any) -> Event:
    payload: dict[str, Any] = {
        "name": "Alice's notes",
        "writers": [WRITER.principal],
        "readers": [READER.principal],
        "policy": policy,
    }
    if subject_id is not None:
        payload["subject_id"] = subject_id
    return _event(CubeCreated, payload, at=at)


def added(
    memory_id: str, text: str = "likes tea", *, at: datetime = T0, actor: Actor = OWNER, **extra: Any
) -> Event:
    return _event(MemoryAdded, {"content": {"text": text}, **extra}, memory_id=memory_id, actor=actor, at=at)


def add_sealed(memory_id: str, sealed: dict[str, str], *, at: datetime = T0, actor: Actor = OWNER) -> Event:
    return _event(MemoryAdded, {"content": {"sealed": sealed}}, memory_id=memory_id, actor=actor, at=at)


def updated(memory_id: str, *, at: datetime = T0, actor: Actor = OWNER, **changes: Any) -> Event:
    return _event(MemoryUpdated, changes, memory_id=memory_id, actor=actor, at=at)


def deleted(memory_id: str, *, at: datetime = T0, actor: Actor = OWNER) -> Event:
    return _event(MemoryDeleted, {}, memory_id=memory_id, actor=actor, at=at)


def archived(memory_id: str, *, at: datetime = T0, actor: Actor = OWNER) -> Event:
    return _event(MemoryArchived, {}, memory_id=memory_id, actor=actor, at=at)


def expired(memory_id: str, *, at: datetime = T0, actor: Actor = SYSTEM) -> Event:
    return _event(MemoryExpired, {}, memory_id=memory_id, actor=actor, at=at)


def accessed(*memory_ids: str, at: datetime = T0, actor: Actor = READER) -> Event:
    return _event(
        MemoryAccessed, {"memory_ids": list(memory_ids), "request_kind": "search"}, actor=actor, at=at
    )


def merged(
    into: str, sources: list[str], text: str = "merged", *, at: datetime = T0, actor: Actor = OWNER
) -> Event:
    return _event(
        MemoryMerged, {"sources": sources, "content": {"text": text}}, memory_id=into, actor=actor, at=at
    )


def transformed(
    output: str, sources: list[tuple[str, int]], *, at: datetime = T0, actor: Actor = SYSTEM
) -> Event:
    return _event(
        MemoryTransformed,
        {
            "transformation": "plaintext_to_parametric",
            "sources": [{"memory_id": m, "version": v} for m, v in sources],
            "artifact": {
                "uri": f"file:///adapters/{output}",
                "format": "peft-lora",
                "base_model_fingerprint": "smollm2-135m",
            },
        },
        memory_id=output,
        actor=actor,
        at=at,
    )


def policy_changed(*, at: datetime = T0, actor: Actor = OWNER, **policy: Any) -> Event:
    return _event(CubePolicyChanged, {"policy": policy}, actor=actor, at=at)


def acl_changed(
    *, owner: str = OWNER.principal, writers: tuple[str, ...] = (), readers: tuple[str, ...] = (),
    at: datetime = T0, actor: Actor = OWNER,
) -> Event:  # fmt: skip
    return _event(
        CubeAclChanged,
        {"acl": {"owner": owner, "writers": list(writers), "readers": list(readers)}},
        actor=actor,
        at=at,
    )


def rolled_back(to_version: int, *, at: datetime = T0, actor: Actor = OWNER) -> Event:
    return _event(CubeRolledBack, {"to_version": to_version}, actor=actor, at=at)


def erased(subject_id: str, *, at: datetime = T0, actor: Actor = OWNER) -> Event:
    return _event(SubjectErased, {"subject_id": subject_id}, actor=actor, at=at)


def with_expected_version(event: Event, expected: int) -> Event:
    return event.model_copy(update={"expected_version": expected})
