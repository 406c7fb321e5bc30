"""The lake's history as the serving tier reads it: versions, time travel, diffs, lineage.

`LakeHistory` is the role; the service entry point adapts `lake` (which reads
the append-only `memory_versions` and `cube_versions` tables, so history
reaches back to a cube's first version whatever vacuum removed).
"""

from __future__ import annotations

__all__ = ["CubeVersionInfo", "CubeAt", "MemoryChangeInfo", "CubeChanges", "MemoryVersionInfo", "LakeHistory"]

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from memlake.model import Cube, Memory


@dataclass(frozen=True, slots=True)
class CubeVersionInfo:
    version: int
    event_id: str
    event_type: str
    memory_id: str | None
    actor: str
    occurred_at: datetime
    logged_at: datetime
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class CubeAt:
    cube: Cube | None
    version: int
    memories: dict[str, Memory]


@dataclass(frozen=True, slots=True)
class MemoryChangeInfo:
    memory_id: str
    fields: tuple[str, ...]
    before: Memory
    after: Memory


@dataclass(frozen=True, slots=True)
class CubeChanges:
    from_version: int
    to_version: int
    added: tuple[Memory, ...]
    removed: tuple[Memory, ...]
    changed: tuple[MemoryChangeInfo, ...]
    cube_fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MemoryVersionInfo:
    memory: Memory
    event_id: str | None
    event_type: str | None


class LakeHistory(Protocol):
    def versions(self, cube_id: str, *, after_version: int, limit: int) -> list[CubeVersionInfo]:
        """The cube's versions after `after_version`, oldest first, at most `limit`."""
        ...

    def as_of(self, cube_id: str, *, version: int | None = None, timestamp: datetime | None = None) -> CubeAt:
        """The cube as it stood at a version or a time (`TimeTravelError` when out of range)."""
        ...

    def diff(self, cube_id: str, from_version: int, to_version: int) -> CubeChanges: ...

    def memory_history(self, cube_id: str, memory_id: str) -> list[MemoryVersionInfo]: ...

    def lineage(self, cube_id: str, memory_id: str) -> dict[str, Any]: ...
