"""History and lineage of one memory, and the difference between two versions of a cube."""

from __future__ import annotations

__all__ = ["MemoryVersion", "memory_history", "lineage", "CubeDiff", "MemoryChange", "diff"]

from dataclasses import dataclass, field
from typing import Any

import pyarrow.compute as pc

from lake.rows import memory_from_json
from lake.scan import sql_in
from lake.schemas import bucket_of
from lake.snapshot import open_snapshot
from lake.tables import Lake
from lake.time_travel import as_of
from memlake.model import Memory, SourceRef


@dataclass(frozen=True)
class MemoryVersion:
    memory: Memory
    event_id: str | None
    event_type: str | None

    @property
    def version(self) -> int:
        return self.memory.version


def memory_history(lake: Lake, memory_id: str, *, cube_id: str | None = None) -> list[MemoryVersion]:
    """Every version of a memory, oldest first, with the event that made it."""
    snap = open_snapshot(lake, tables=("memory_versions",))
    where = pc.field("memory_id") == memory_id
    prune = None
    if cube_id is not None:
        bucket = bucket_of(cube_id, lake.settings.buckets)
        where = where & (pc.field("bucket") == bucket) & (pc.field("cube_id") == cube_id)
        prune = f"bucket = {bucket} AND {sql_in('cube_id', [cube_id])}"
    rows = snap.read(
        "memory_versions",
        columns=["version", "memory_json", "event_id", "event_type"],
        filter=where,
        prune=prune,
    )
    out = [
        MemoryVersion(memory_from_json(value), event_id, event_type)
        for value, event_id, event_type in zip(
            *(rows.column(c).to_pylist() for c in ("memory_json", "event_id", "event_type")), strict=True
        )
    ]
    return sorted(out, key=lambda v: (v.memory.cube_id, v.version))


def lineage(lake: Lake, memory_id: str, *, cube_id: str | None = None, depth: int = 16) -> dict[str, Any]:
    """What a memory was made from, recursively: `{memory_id, version, sources: [...]}`."""

    def walk(mid: str, version: int | None, level: int) -> dict[str, Any]:
        versions = memory_history(lake, mid, cube_id=cube_id)
        chosen = next((v for v in versions if v.version == version), versions[-1] if versions else None)
        node: dict[str, Any] = {"memory_id": mid, "version": version, "sources": []}
        if chosen is None or level >= depth:
            return node
        node["version"] = chosen.version
        node["kind"] = chosen.memory.kind.value
        refs: tuple[SourceRef, ...] = chosen.memory.header.lineage
        node["sources"] = [walk(ref.memory_id, ref.version, level + 1) for ref in refs]
        return node

    return walk(memory_id, None, 0)


def _comparable(memory: Memory) -> dict[str, Any]:
    # What a reader sees; bookkeeping (versions, update time, read counts) is no difference.
    return memory.model_dump(
        mode="json", exclude={"indicators": True, "cube_version": True, "header": {"updated_at"}}
    )


@dataclass(frozen=True)
class MemoryChange:
    memory_id: str
    fields: tuple[str, ...]  # dotted paths that differ
    before: Memory
    after: Memory


@dataclass(frozen=True)
class CubeDiff:
    cube_id: str
    from_version: int
    to_version: int
    added: tuple[Memory, ...] = ()
    removed: tuple[Memory, ...] = ()
    changed: tuple[MemoryChange, ...] = ()
    cube_fields: tuple[str, ...] = field(default=())  # policy, ACL, name... that differ

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.cube_fields)


def _paths(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out.extend(_paths(a.get(key), b.get(key), f"{prefix}{key}."))
        return out
    return [] if a == b else [prefix.rstrip(".")]


def diff(lake: Lake, cube_id: str, from_version: int, to_version: int) -> CubeDiff:
    """What changed in a cube between two of its versions (deleted memories count as removed)."""
    before = as_of(lake, cube_id, version=from_version)
    after = as_of(lake, cube_id, version=to_version)
    old, new = before.visible(), after.visible()
    changed = []
    for mid in sorted(set(old) & set(new)):
        paths = _paths(_comparable(old[mid]), _comparable(new[mid]))
        if paths:
            changed.append(MemoryChange(mid, tuple(paths), old[mid], new[mid]))
    cube_fields: list[str] = []
    if before.cube is not None and after.cube is not None:
        cube_fields = _paths(
            before.cube.model_dump(mode="json", exclude={"version", "updated_at"}),
            after.cube.model_dump(mode="json", exclude={"version", "updated_at"}),
        )
    return CubeDiff(
        cube_id,
        from_version,
        to_version,
        added=tuple(new[m] for m in sorted(set(new) - set(old))),
        removed=tuple(old[m] for m in sorted(set(old) - set(new))),
        changed=tuple(changed),
        cube_fields=tuple(cube_fields),
    )
