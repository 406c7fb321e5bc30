"""The dense index of memories: the `VectorIndex` role and its Milvus adapter.

The index is derived from the lake and never its master: every row can be
recomputed from the `memories` table, and `memlake index rebuild` does so.
A row is one *version* of a memory (primary key `cube|memory|version`), so
that a search answered from an older snapshot still finds the vectors of the
versions that snapshot holds while a newer one is being indexed; superseded
rows are deleted once no request reads the older snapshot any more.

Rows of one cube live in one partition (a hash of the cube id), so a search
reads only the partitions of the cubes it may see. Milvus Lite evaluates each
searched row in Python before the ANN step; scanning 1/256th of the collection
instead of all of it is what keeps a search in milliseconds at 100k rows.
"""

from __future__ import annotations

__all__ = ["IndexKey", "IndexedMemory", "VectorHit", "VectorIndex", "IndexMeta", "partition_of"]

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from memlake.errors import ConfigError

_SEP = "|"  # not allowed in ids (memlake.model.ID_PATTERN), so keys split unambiguously


@dataclass(frozen=True, slots=True, order=True)
class IndexKey:
    """One version of one memory: what a vector row stands for."""

    cube_id: str
    memory_id: str
    version: int

    @property
    def pk(self) -> str:
        return f"{self.cube_id}{_SEP}{self.memory_id}{_SEP}{self.version}"

    @classmethod
    def parse(cls, pk: str) -> IndexKey:
        cube_id, memory_id, version = pk.split(_SEP)
        return cls(cube_id, memory_id, int(version))


@dataclass(frozen=True, slots=True)
class IndexedMemory:
    """A row of the index: the key, the fields filters push down to, and the vector."""

    key: IndexKey
    kind: str
    status: str
    memory_type: str
    tags: tuple[str, ...]
    created_at_ms: int
    vector: npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class VectorHit:
    key: IndexKey
    similarity: float  # cosine similarity in [-1, 1]


@runtime_checkable
class VectorIndex(Protocol):
    """Nearest-neighbour search over memory vectors, restricted to cubes."""

    def ensure(self) -> None:
        """Create the collection if it does not exist; check it fits the embedder."""
        ...

    def upsert(self, rows: Sequence[IndexedMemory]) -> None: ...

    def delete(self, keys: Iterable[IndexKey]) -> None: ...

    def flush(self) -> None:
        """Make written rows durable and indexed (searches over unflushed rows are brute force)."""
        ...

    def search(
        self, vector: npt.NDArray[np.float32], *, cube_ids: Sequence[str], expression: str, limit: int
    ) -> list[VectorHit]: ...

    def row_keys(self) -> set[IndexKey]:
        """Every row's key: what startup reconciles with the snapshot."""
        ...

    def count(self) -> int: ...

    def drop(self) -> None: ...

    def close(self) -> None: ...


def partition_of(cube_id: str, partitions: int) -> str:
    """The partition a cube's rows live in: stable across processes (CRC-32)."""
    return f"b{zlib.crc32(cube_id.encode()) % partitions}"


@dataclass(frozen=True, slots=True)
class IndexMeta:
    """What a collection was built with; a mismatch means the vectors are not comparable."""

    embedder: str
    dim: int

    def check(self, found_embedder: str | None, found_dim: int | None, *, collection: str) -> None:
        if found_embedder not in (None, self.embedder) or found_dim not in (None, self.dim):
            raise ConfigError(
                "models.embedder",
                f"collection {collection!r} was built with {found_embedder!r} (dim {found_dim}); "
                f"run `memlake index rebuild` to index with {self.embedder!r} (dim {self.dim})",
            )
