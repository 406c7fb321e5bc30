"""Consolidation's embedding cache: one vector per memory content, so a run embeds only what is new.

A memory is *new* to consolidation when its current content has no vector
yet; near-duplicate and contradiction checks then only compare pairs that
involve a new memory (older pairs were compared when they were new). The
cache is appended to after a run's events are sent, so a crash in between
leaves those memories new and the next run compares them again.

Rows of memories that changed or left the active set stay until their
bucket is rewritten (`compact_bucket`) once they are a large enough share of
it. Vectors of sealed content are sealed under the subject's data key:
erasing the subject makes them unreadable at once, and `forget` deletes them.
"""

from __future__ import annotations

__all__ = ["VectorCache", "CachedVectors", "content_digest", "text_digest", "Embed"]

import base64
import hashlib
from collections.abc import Callable, Collection, Iterable, Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from lake.tables import Lake, delta_errors
from memlake.errors import SealedContentError
from memlake.model import Content, Sealed
from pipelines.consolidation_tables import VECTORS, VECTORS_SCHEMA, OwnTable, subject_predicate
from streams.sealing import Sealer

Vectors = npt.NDArray[np.float32]
Embed = Callable[[Sequence[str]], Vectors]


def text_digest(text: str) -> str:
    return "t:" + hashlib.sha256(text.encode()).hexdigest()


def content_digest(content: Content) -> str:
    """What identifies a content in the cache: its text, or for sealed content its ciphertext."""
    if content.sealed is not None:
        return "s:" + hashlib.sha256(content.sealed.ciphertext.encode()).hexdigest()
    assert content.text is not None
    return text_digest(content.text)


class CachedVectors:
    """Cached vectors by (cube_id, memory_id, content digest); each is decoded only when asked for."""

    def __init__(self, data: pa.Table, sealer: Sealer) -> None:
        self._blobs = data.column("vector")
        self._sealed = data.column("sealed")
        self._sealer = sealer
        keys = zip(
            data.column("cube_id").to_pylist(),
            data.column("memory_id").to_pylist(),
            data.column("content_sha256").to_pylist(),
            strict=True,
        )
        self._rows = {key: i for i, key in enumerate(keys)}

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def stored_keys(self) -> Iterable[tuple[str, str, str]]:
        return self._rows.keys()

    def get(self, key: tuple[str, str, str]) -> Vectors | None:
        """The vector, or None when not cached or no longer readable (its subject was erased)."""
        row = self._rows.get(key)
        if row is None:
            return None
        blob: bytes = self._blobs[row].as_py()
        if self._sealed[row].as_py():
            try:
                blob = base64.b64decode(self._sealer.open(Sealed.model_validate_json(blob)))
            except SealedContentError:
                return None  # the subject was erased: the vector is gone with the key
        vector: Vectors = np.frombuffer(blob, dtype="<f2").astype(np.float32)
        return vector


class VectorCache:
    """The `memory_vectors` table. The constructor does no I/O."""

    def __init__(self, lake: Lake, *, embedder: str) -> None:
        self._table = OwnTable(lake, VECTORS, VECTORS_SCHEMA, ("bucket",))
        self._embedder = embedder

    @property
    def table(self) -> OwnTable:
        return self._table

    def load(self, bucket: int, cube_ids: Iterable[str], *, sealer: Sealer) -> tuple[CachedVectors, int]:
        """The cached vectors of one bucket's cubes (decoded on demand), and the bucket's row count."""
        data = self._table.read(
            columns=["cube_id", "memory_id", "content_sha256", "embedder", "sealed", "vector"],
            filters=[("bucket", "=", int(bucket))],
        )
        total = int(data.num_rows)
        wanted = pa.array(sorted(set(cube_ids)), pa.string())
        mask = pc.and_(
            pc.is_in(data.column("cube_id"), wanted), pc.equal(data.column("embedder"), self._embedder)
        )
        return CachedVectors(data.filter(mask), sealer), total

    def rows(
        self,
        entries: Sequence[tuple[int, str, str, Content, str | None, Vectors]],
        *,
        sealer: Sealer,
    ) -> pa.Table:
        """New cache rows from (bucket, cube_id, memory_id, content, subject_id, vector)."""
        columns: dict[str, list[object]] = {name: [] for name in VECTORS_SCHEMA.names}
        for bucket, cube_id, memory_id, content, subject_id, vector in entries:
            raw = np.asarray(vector, dtype="<f2").tobytes()
            sealed = content.sealed is not None
            if sealed:
                assert content.sealed is not None
                envelope = sealer.seal(base64.b64encode(raw).decode(), content.sealed.subject_id)
                raw = envelope.model_dump_json().encode()
            for name, value in (
                ("bucket", bucket),
                ("cube_id", cube_id),
                ("memory_id", memory_id),
                ("content_sha256", content_digest(content)),
                ("subject_id", subject_id),
                ("embedder", self._embedder),
                ("sealed", sealed),
                ("vector", raw),
            ):
                columns[name].append(value)
        return pa.table(columns, schema=VECTORS_SCHEMA)

    def append(self, data: pa.Table) -> int | None:
        """Append new rows in one commit; the table version written (None when nothing to add)."""
        from deltalake import write_deltalake

        if data.num_rows == 0:
            return None
        dt = self._table.table()
        with delta_errors(VECTORS):
            write_deltalake(dt, data, mode="append")  # moves `dt` to its commit
            return int(dt.version())

    def compact_bucket(self, bucket: int, stale: Collection[tuple[str, str, str]]) -> int:
        """Rewrite one bucket without the rows of `stale` ((cube_id, memory_id, content digest))."""
        from deltalake import write_deltalake

        if not stale:
            return 0
        data = self._table.read(filters=[("bucket", "=", int(bucket))])
        keep = [
            (c, m, sha) not in stale
            for c, m, sha in zip(
                data.column("cube_id").to_pylist(),
                data.column("memory_id").to_pylist(),
                data.column("content_sha256").to_pylist(),
                strict=True,
            )
        ]
        kept = data.filter(pa.array(keep, pa.bool_()))
        dt = self._table.table()
        with delta_errors(VECTORS):
            write_deltalake(dt, kept, mode="overwrite", predicate=f"bucket = {int(bucket)}")
        return int(data.num_rows) - int(kept.num_rows)

    def forget(self, *, subject_id: str, memories: Iterable[tuple[str, str]] = ()) -> int:
        """Delete every vector about a subject (and of the given (cube, memory) pairs)."""
        return self._table.delete(subject_predicate(subject_id, memories))
