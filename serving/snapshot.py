"""What the serving tier answers from: an immutable, in-memory snapshot of the lake.

A `ServingSnapshot` holds every cube and memory of one consistent cut of the
derived tables (`memories` and `cubes` at one events-table version, the
`snapshot_version` every answer carries), the text of each searchable memory
and a BM25 index per cube. It never changes: moving forward builds a new
snapshot that shares the untouched cubes with the old one, and the keeper
swaps the reference in one assignment, so a request sees one materialisation
or the next, never half of one.

`SnapshotSource` is the role of the lake seen from here; the service entry
point adapts `lake` to it.
"""

from __future__ import annotations

__all__ = [
    "ContentOpener",
    "CubeShard",
    "ServingSnapshot",
    "SnapshotSource",
    "LakeCut",
    "ChangeSet",
    "searchable",
    "memory_text",
    "index_key",
]

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Protocol

from memlake.errors import SealedContentError
from memlake.model import Content, Cube, Memory, MemoryKind
from serving.filters import SEARCHABLE_STATUSES
from serving.lexical import Bm25Index
from serving.vector_index import IndexKey

# Opens sealed content (raises SealedContentError once the subject's key is gone).
ContentOpener = Callable[[Content], str]
_ARTIFACT_TEXT_CHARS = 2000


@dataclass(frozen=True, slots=True)
class LakeCut:
    """Derived tables at one events-table version; `table_versions` are Delta versions."""

    watermark: int
    table_versions: Mapping[str, int | None]
    cubes: tuple[Cube, ...] = ()
    memories: tuple[Memory, ...] = ()


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Rows that changed between two cuts (newest image of each), read from the change data feed."""

    watermark: int
    table_versions: Mapping[str, int | None]
    cubes: tuple[Cube, ...] = ()
    memories: tuple[Memory, ...] = ()
    removed_cubes: tuple[str, ...] = ()
    removed_memories: tuple[tuple[str, str], ...] = ()  # (cube_id, memory_id)


class SnapshotSource(Protocol):
    def load(self) -> LakeCut:
        """Everything at the newest consistent cut."""
        ...

    def changes(self, *, watermark: int, table_versions: Mapping[str, int | None]) -> ChangeSet | None:
        """What changed after the cut at `watermark` (with those Delta versions), up to the newest
        consistent cut; None when there is nothing newer."""
        ...

    def covered_offsets(self, watermark: int) -> Mapping[int, int]:
        """The last Kafka offset per partition that the cut at `watermark` reflects."""
        ...


def searchable(memory: Memory) -> bool:
    return memory.status in SEARCHABLE_STATUSES


def memory_text(memory: Memory, opener: ContentOpener | None) -> str | None:
    """The text of a plaintext memory, opened if sealed (None when it cannot be read)."""
    content = memory.content
    if content is None:
        return None
    if content.text is not None:
        return content.text
    if opener is None:
        return None
    try:
        return opener(content)
    except SealedContentError:
        return None  # the subject was erased: the content is gone for good


def index_key(memory: Memory) -> IndexKey:
    return IndexKey(memory.cube_id, memory.memory_id, memory.version)


@dataclass(frozen=True)
class CubeShard:
    """One cube inside a snapshot: its memories, their texts and its lexical index."""

    cube: Cube
    memories: Mapping[str, Memory]
    texts: Mapping[str, str]  # memory_id -> indexed text, for searchable memories only
    lexical: Bm25Index[IndexKey]
    pinned: tuple[str, ...] = ()

    @classmethod
    def build(cls, cube: Cube, memories: Iterable[Memory], opener: ContentOpener | None) -> CubeShard:
        by_id = {m.memory_id: m for m in sorted(memories, key=lambda m: m.memory_id)}
        texts: dict[str, str] = {}
        for memory in by_id.values():
            if not searchable(memory) or memory.kind is not MemoryKind.PLAINTEXT:
                continue
            text = memory_text(memory, opener)
            if text:
                texts[memory.memory_id] = text
        # Activation and parametric memories have no text of their own; they are
        # found by the text of the memories they encode.
        for memory in by_id.values():
            if searchable(memory) and memory.kind is not MemoryKind.PLAINTEXT:
                texts[memory.memory_id] = _artifact_text(memory, by_id, texts)
        docs = [(index_key(by_id[mid]), text) for mid, text in texts.items()]
        pinned = tuple(mid for mid, m in by_id.items() if m.governance.pinned and mid in texts)
        return cls(cube, MappingProxyType(by_id), MappingProxyType(texts), Bm25Index.build(docs), pinned)

    def live(self, memory_id: str, version: int) -> Memory | None:
        memory = self.memories.get(memory_id)
        if memory is None or memory.version != version or memory_id not in self.texts:
            return None
        return memory


def _artifact_text(memory: Memory, by_id: Mapping[str, Memory], texts: Mapping[str, str]) -> str:
    sources = [texts[ref.memory_id] for ref in memory.header.lineage if ref.memory_id in texts]
    head = f"{memory.kind.value} memory ({memory.header.memory_type})"
    if memory.header.tags:
        head += " tags: " + ", ".join(memory.header.tags)
    text = "\n".join([head, *sources])
    return text[:_ARTIFACT_TEXT_CHARS]


@dataclass(eq=False)
class ServingSnapshot:
    """Every cube and memory of one lake cut. Treat as immutable; `leases` counts readers."""

    version: int
    table_versions: Mapping[str, int | None]
    shards: Mapping[str, CubeShard]
    covered: Mapping[int, int]  # Kafka partition -> last offset reflected
    loaded_at: datetime
    _leases: int = field(default=0, repr=False)
    _lease_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def acquire(self) -> None:
        with self._lease_lock:
            self._leases += 1

    def release(self) -> None:
        with self._lease_lock:
            self._leases -= 1

    @property
    def leases(self) -> int:
        with self._lease_lock:
            return self._leases

    def cube(self, cube_id: str) -> Cube | None:
        shard = self.shards.get(cube_id)
        return shard.cube if shard else None

    def covers(self, partition: int, offset: int) -> bool:
        return self.covered.get(partition, -1) >= offset

    def memory_count(self) -> int:
        return sum(len(s.memories) for s in self.shards.values())

    def live(self, key: IndexKey) -> Memory | None:
        """The memory a vector row stands for, if this snapshot holds that version as searchable."""
        shard = self.shards.get(key.cube_id)
        return shard.live(key.memory_id, key.version) if shard is not None else None

    def searchable_keys(self) -> set[IndexKey]:
        return {index_key(shard.memories[mid]) for shard in self.shards.values() for mid in shard.texts}

    @staticmethod
    def build(
        cut: LakeCut | ChangeSet,
        *,
        covered: Mapping[int, int],
        opener: ContentOpener | None,
        now: datetime,
        previous: ServingSnapshot | None = None,
    ) -> ServingSnapshot:
        """A full snapshot from a cut, or the next one from `previous` and a change set."""
        shards: dict[str, CubeShard] = dict(previous.shards) if previous is not None else {}
        cubes = {c.cube_id: c for c in cut.cubes}
        changed_memories: dict[str, dict[str, Memory]] = {}
        for memory in cut.memories:
            changed_memories.setdefault(memory.cube_id, {})[memory.memory_id] = memory
        removed: dict[str, set[str]] = {}
        if isinstance(cut, ChangeSet):
            for cube_id in cut.removed_cubes:
                shards.pop(cube_id, None)
            for cube_id, memory_id in cut.removed_memories:
                removed.setdefault(cube_id, set()).add(memory_id)
        for cube_id in sorted(set(cubes) | set(changed_memories) | set(removed)):
            old = shards.get(cube_id)
            cube = cubes.get(cube_id) or (old.cube if old else None)
            if cube is None:
                continue  # memories of a cube this cut does not have (cannot happen in a consistent cut)
            merged = dict(old.memories) if old else {}
            for memory_id in removed.get(cube_id, ()):
                merged.pop(memory_id, None)
            merged.update(changed_memories.get(cube_id, {}))
            if (
                old is not None
                and cube_id not in removed
                and _indicators_only(old.memories, changed_memories.get(cube_id, {}))
            ):
                # Reads (memory.accessed) change counters, not what is indexed: keep the indexes.
                shards[cube_id] = CubeShard(
                    cube, MappingProxyType(dict(sorted(merged.items()))), old.texts, old.lexical, old.pinned
                )
            else:
                shards[cube_id] = CubeShard.build(cube, merged.values(), opener)
        return ServingSnapshot(
            version=cut.watermark,
            table_versions=MappingProxyType(dict(cut.table_versions)),
            shards=MappingProxyType(shards),
            covered=MappingProxyType(dict(covered)),
            loaded_at=now,
        )


def _indicators_only(old: Mapping[str, Memory], changed: Mapping[str, Memory]) -> bool:
    """Whether every change keeps the memory's version (only behavioural indicators moved)."""
    for memory_id, memory in changed.items():
        before = old.get(memory_id)
        if before is None or before.version != memory.version or before.status is not memory.status:
            return False
    return True
