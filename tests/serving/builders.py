"""Pure values for the serving tests: cubes and memories as the fold would make them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from memlake.model import (
    Acl,
    ArtifactRef,
    Content,
    Cube,
    Governance,
    Indicators,
    Memory,
    MemoryHeader,
    MemoryKind,
    MemoryStatus,
    SourceRef,
    Visibility,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OWNER = "user:alice"
WRITER = "agent:helper"
READER = "user:bob"
STRANGER = "user:mallory"


def cube(cube_id: str = "cube-a", *, owner: str = OWNER, version: int = 1, **acl: Any) -> Cube:
    return Cube(
        cube_id=cube_id,
        name=f"{cube_id} name",
        acl=Acl(owner=owner, writers=acl.get("writers", (WRITER,)), readers=acl.get("readers", (READER,))),
        version=version,
        created_at=T0,
        updated_at=T0,
    )


def memory(
    memory_id: str,
    text: str | None = "a fact",
    *,
    cube_id: str = "cube-a",
    version: int = 1,
    status: MemoryStatus = MemoryStatus.ACTIVE,
    kind: MemoryKind = MemoryKind.PLAINTEXT,
    tags: tuple[str, ...] = (),
    memory_type: str = "fact",
    priority: float = 0.5,
    pinned: bool = False,
    visibility: Visibility = Visibility.CUBE,
    readers_override: tuple[str, ...] | None = None,
    created_at: datetime = T0,
    updated_at: datetime | None = None,
    access_count: int = 0,
    last_accessed_at: datetime | None = None,
    expires_at: datetime | None = None,
    lineage: tuple[SourceRef, ...] = (),
) -> Memory:
    artifact = None
    content = Content(text=text) if text is not None and kind is MemoryKind.PLAINTEXT else None
    if kind is not MemoryKind.PLAINTEXT:
        artifact = ArtifactRef(uri=f"file:///a/{memory_id}", format="peft-lora", base_model_fingerprint="fp")
    return Memory(
        memory_id=memory_id,
        cube_id=cube_id,
        kind=kind,
        status=status,
        content=content,
        artifact=artifact,
        header=MemoryHeader(
            memory_type=memory_type,
            tags=tags,
            lineage=lineage,
            created_at=created_at,
            updated_at=updated_at or created_at,
        ),
        governance=Governance(
            priority=priority,
            pinned=pinned,
            visibility=visibility,
            readers_override=readers_override,
            expires_at=expires_at,
        ),
        indicators=Indicators(access_count=access_count, last_accessed_at=last_accessed_at, version=version),
        cube_version=version,
    )


def hours(n: float) -> timedelta:
    return timedelta(hours=n)
