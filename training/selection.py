"""Which memories a cube's KV cache and adapter encode: the pinned ones and the hot ones.

A plaintext memory is hot when the `usage` table counts at least
`hot_min_accesses` reads of it over the last `hot_window_days` days. Only
live memories with clear text and no data subject qualify: content tied to a
person (sealed, or carrying a `subject_id`) stays out of caches and adapters,
since an artifact cannot be crypto-shredded key by key; so erasing a subject
never has to reach into weights.

Everything is read from one consistent lake snapshot, whose table versions
are recorded with the selection: they are the training data's lineage.
"""

from __future__ import annotations

__all__ = ["HotMemory", "Selection", "select_memories", "live_versions"]

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pyarrow.compute as pc

from lake.snapshot import Snapshot
from memlake.model import MemoryKind, SourceRef
from memlake.settings import TrainingSettings


@dataclass(frozen=True, slots=True)
class HotMemory:
    """One memory chosen for a cube's artifacts, at the version read."""

    memory_id: str
    version: int
    text: str
    tags: tuple[str, ...] = ()
    memory_type: str = "fact"
    pinned: bool = False
    accesses: int = 0

    @property
    def ref(self) -> SourceRef:
        return SourceRef(memory_id=self.memory_id, version=self.version)


@dataclass(frozen=True)
class Selection:
    """A cube's chosen memories and where in the lake they were read."""

    cube_id: str
    memories: tuple[HotMemory, ...]
    hot: int  # memories over the read threshold (before the cap)
    pinned: int
    snapshot_watermark: int
    table_versions: Mapping[str, int | None] = field(default_factory=dict)

    @property
    def sources(self) -> tuple[SourceRef, ...]:
        return tuple(m.ref for m in self.memories)

    def enough(self, settings: TrainingSettings) -> bool:
        return len(self.memories) >= settings.min_hot_memories


def _accesses(snapshot: Snapshot, *, since: datetime, cube_id: str | None) -> dict[tuple[str, str], int]:
    condition = pc.field("day") >= since.date()
    if cube_id is not None:
        condition = condition & (pc.field("cube_id") == cube_id)
    usage = snapshot.read("usage", columns=["cube_id", "memory_id", "access_count"], filter=condition)
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for cube, memory, count in zip(
        usage.column("cube_id").to_pylist(),
        usage.column("memory_id").to_pylist(),
        usage.column("access_count").to_pylist(),
        strict=True,
    ):
        totals[(cube, memory)] += int(count or 0)
    return totals


def select_memories(
    snapshot: Snapshot, settings: TrainingSettings, *, now: datetime, cube_id: str | None = None
) -> dict[str, Selection]:
    """Per cube, its pinned and hot plaintext memories: pinned first, then most read, then by id."""
    totals = _accesses(snapshot, since=now - timedelta(days=settings.hot_window_days), cube_id=cube_id)
    memories = snapshot.memories(cube_id=cube_id, live_only=True).select(
        [
            "cube_id",
            "memory_id",
            "version",
            "kind",
            "text",
            "tags",
            "memory_type",
            "pinned",
            "expires_at",
            "subject_id",
        ]
    )
    per_cube: dict[str, list[HotMemory]] = defaultdict(list)
    hot_counts: dict[str, int] = defaultdict(int)
    pinned_counts: dict[str, int] = defaultdict(int)
    for row in memories.to_pylist():
        if row["kind"] != MemoryKind.PLAINTEXT.value or not row["text"] or row["subject_id"]:
            continue
        if row["expires_at"] is not None and row["expires_at"] <= now:
            continue
        accesses = totals.get((row["cube_id"], row["memory_id"]), 0)
        hot = accesses >= settings.hot_min_accesses
        pinned = bool(row["pinned"])
        hot_counts[row["cube_id"]] += hot
        pinned_counts[row["cube_id"]] += pinned
        if hot or pinned:
            per_cube[row["cube_id"]].append(
                HotMemory(
                    memory_id=row["memory_id"],
                    version=int(row["version"]),
                    text=row["text"],
                    tags=tuple(row["tags"] or ()),
                    memory_type=row["memory_type"] or "fact",
                    pinned=pinned,
                    accesses=accesses,
                )
            )
    out = {}
    for cube, chosen in sorted(per_cube.items()):
        chosen.sort(key=lambda m: (not m.pinned, -m.accesses, m.memory_id))
        out[cube] = Selection(
            cube_id=cube,
            memories=tuple(chosen[: settings.max_memories_per_cube]),
            hot=hot_counts[cube],
            pinned=pinned_counts[cube],
            snapshot_watermark=snapshot.watermark,
            table_versions=dict(snapshot.versions),
        )
    return out


def live_versions(snapshot: Snapshot, cube_id: str) -> dict[str, int]:
    """Current version of every live memory of a cube: what artifacts' lineage is checked against."""
    table = snapshot.memories(cube_id=cube_id, live_only=True).select(["memory_id", "version"])
    return dict(
        zip(
            table.column("memory_id").to_pylist(),
            (int(v) for v in table.column("version").to_pylist()),
            strict=True,
        )
    )
