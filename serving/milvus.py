"""Milvus adapters of `VectorIndex`: the embedded Milvus Lite engine and a Milvus server.

`MilvusLiteVectorIndex` opens a Milvus Lite data folder with the engine's own
Python API, in this process. Going through pymilvus to a Lite file instead
starts a gRPC server on a thread of the same process, and each call then pays
for the round trip and for two threads taking turns on the GIL (measured
here: 25 ms against 4 ms per search at 100k rows). `MilvusVectorIndex` is
the pymilvus client for a Milvus server (`http://host:19530`); pointed at a
local file it also works, through that in-process server, which is how the
contract tests run it without a cluster. `open_vector_index` picks by URI.

Both create the same collection: one row per memory version, HNSW over
cosine, one partition per cube-hash bucket (see `serving.vector_index`).
"""

from __future__ import annotations

__all__ = ["MilvusLiteVectorIndex", "MilvusVectorIndex", "open_vector_index"]

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from memlake.errors import VectorIndexError
from memlake.settings import ModelSettings, ServingSettings
from serving.vector_index import IndexedMemory, IndexKey, IndexMeta, VectorHit, VectorIndex, partition_of

_CHUNK = 2000
_HNSW = {"M": 16, "efConstruction": 128}
_META_EMBEDDER = "memlake.embedder"
_META_DIM = "memlake.dim"


def _records(
    rows: Sequence[IndexedMemory], partitions: int, dim: int, uri: str
) -> dict[str, list[dict[str, Any]]]:
    by_partition: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.vector.shape != (dim,):
            raise VectorIndexError(uri, f"vector of shape {row.vector.shape}, expected ({dim},)")
        by_partition.setdefault(partition_of(row.key.cube_id, partitions), []).append(
            {
                "pk": row.key.pk,
                "cube_id": row.key.cube_id,
                "memory_id": row.key.memory_id,
                "version": row.key.version,
                "kind": row.kind,
                "status": row.status,
                "memory_type": row.memory_type,
                "tags": list(row.tags),
                "created_at_ms": row.created_at_ms,
                "vector": row.vector.tolist(),
            }
        )
    return by_partition


def _ef(limit: int) -> int:
    return max(64, limit)


class MilvusLiteVectorIndex:
    """Milvus Lite's embedded engine on a local data folder, in this process.

    The engine guards only its own maintenance, so every call here takes one
    lock: a search costs a few milliseconds and the GIL would serialise most
    of it anyway.
    """

    def __init__(self, path: str, *, collection: str, meta: IndexMeta, partitions: int = 256) -> None:
        self._path = path
        self._collection = collection
        self._meta = meta
        self._partitions = partitions
        self._db: Any = None
        self._col: Any = None
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return self._path

    def _open_db(self) -> Any:
        from milvus_lite import MilvusLite
        from milvus_lite.exceptions import MilvusLiteError

        if self._db is None:
            try:
                self._db = MilvusLite(self._path)
            except MilvusLiteError as e:
                raise VectorIndexError(
                    self._path, f"cannot open ({e}); is another memlake process using it?"
                ) from e
        return self._db

    def _collection_handle(self) -> Any:
        if self._col is None:
            raise VectorIndexError(self._path, "the collection is not open: call ensure() first")
        return self._col

    def _guard(self, what: str, fn: Any) -> Any:
        from milvus_lite.exceptions import MilvusLiteError
        from milvus_lite.search.filter import FilterError

        with self._lock:
            try:
                return fn()
            except (MilvusLiteError, FilterError) as e:
                raise VectorIndexError(self._path, f"{what}: {e}") from e

    def ensure(self) -> None:
        from milvus_lite import CollectionSchema, DataType, FieldSchema

        def create() -> None:
            db = self._open_db()
            if db.has_collection(self._collection):
                col = db.get_collection(self._collection)
                properties = col.describe().get("schema", {}).get("properties") or {}
                dim = properties.get(_META_DIM)
                self._meta.check(
                    properties.get(_META_EMBEDDER),
                    int(dim) if dim is not None else None,
                    collection=self._collection,
                )
                existing = [p for p in col.list_partitions() if p.startswith("b")]
                if existing:
                    self._partitions = len(existing)
                col.load()
                self._col = col
                return
            schema = CollectionSchema(
                fields=[
                    FieldSchema("pk", DataType.VARCHAR, is_primary=True, max_length=300),
                    FieldSchema("cube_id", DataType.VARCHAR, max_length=128),
                    FieldSchema("memory_id", DataType.VARCHAR, max_length=128),
                    FieldSchema("version", DataType.INT64),
                    FieldSchema("kind", DataType.VARCHAR, max_length=16),
                    FieldSchema("status", DataType.VARCHAR, max_length=16),
                    FieldSchema("memory_type", DataType.VARCHAR, max_length=64),
                    FieldSchema(
                        "tags",
                        DataType.ARRAY,
                        element_type=DataType.VARCHAR,
                        max_capacity=256,
                        max_length=128,
                    ),
                    FieldSchema("created_at_ms", DataType.INT64),
                    FieldSchema("vector", DataType.FLOAT_VECTOR, dim=self._meta.dim),
                ]
            )
            col = db.create_collection(
                self._collection,
                schema,
                properties={_META_EMBEDDER: self._meta.embedder, _META_DIM: str(self._meta.dim)},
            )
            col.create_index("vector", {"index_type": "HNSW", "metric_type": "COSINE", "params": dict(_HNSW)})
            for p in range(self._partitions):
                col.create_partition(f"b{p}")
            col.load()
            self._col = col

        self._guard("create collection", create)

    def upsert(self, rows: Sequence[IndexedMemory]) -> None:
        by_partition = _records(rows, self._partitions, self._meta.dim, self._path)
        for partition, records in by_partition.items():
            for start in range(0, len(records), _CHUNK):
                chunk = records[start : start + _CHUNK]
                self._guard(
                    "upsert",
                    lambda c=chunk, p=partition: self._collection_handle().upsert(c, partition_name=p),
                )

    def delete(self, keys: Iterable[IndexKey]) -> None:
        pks = [k.pk for k in keys]
        for start in range(0, len(pks), _CHUNK):
            chunk = pks[start : start + _CHUNK]
            self._guard("delete", lambda c=chunk: self._collection_handle().delete(c))

    def flush(self) -> None:
        self._guard("flush", lambda: self._collection_handle().flush())

    def search(
        self, vector: npt.NDArray[np.float32], *, cube_ids: Sequence[str], expression: str, limit: int
    ) -> list[VectorHit]:
        if not cube_ids or limit <= 0:
            return []
        partitions = sorted({partition_of(c, self._partitions) for c in cube_ids})
        result = self._guard(
            "search",
            lambda: self._collection_handle().search(
                [vector.tolist()],
                top_k=limit,
                partition_names=partitions,
                expr=expression,
                output_fields=[],
                search_params={"ef": _ef(limit)},
            ),
        )
        return [VectorHit(IndexKey.parse(str(hit["id"])), float(hit["distance"])) for hit in result[0]]

    def row_keys(self) -> set[IndexKey]:
        rows = self._guard(
            "list keys", lambda: self._collection_handle().query(expr=None, output_fields=["pk"])
        )
        return {IndexKey.parse(str(r["pk"])) for r in rows}

    def count(self) -> int:
        return len(self.row_keys())

    def drop(self) -> None:
        def drop() -> None:
            db = self._open_db()
            if db.has_collection(self._collection):
                db.drop_collection(self._collection)
            self._col = None

        self._guard("drop collection", drop)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
            self._db = None
            self._col = None


class MilvusVectorIndex:
    """A Milvus server (or any endpoint pymilvus reaches) through `MilvusClient`."""

    def __init__(
        self,
        uri: str,
        *,
        collection: str,
        meta: IndexMeta,
        partitions: int = 256,
        token: str | None = None,
    ) -> None:
        self._uri = uri
        self._collection = collection
        self._meta = meta
        self._partitions = partitions
        self._token = token
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return self._uri

    def _call(self, what: str, fn: Any) -> Any:
        from pymilvus.exceptions import MilvusException

        with self._lock:
            if self._client is None:
                from pymilvus import MilvusClient

                try:
                    self._client = MilvusClient(uri=self._uri, token=self._token or "")
                except (MilvusException, OSError, RuntimeError) as e:
                    raise VectorIndexError(self._uri, f"cannot connect: {e}") from e
            client = self._client
        try:
            return fn(client)
        except MilvusException as e:
            raise VectorIndexError(self._uri, f"{what}: {e}") from e

    def ensure(self) -> None:
        from pymilvus import DataType

        def create(client: Any) -> None:
            if client.has_collection(self._collection):
                info = client.describe_collection(self._collection)
                properties = info.get("properties") or {}
                dim = properties.get(_META_DIM)
                self._meta.check(
                    properties.get(_META_EMBEDDER),
                    int(dim) if dim is not None else None,
                    collection=self._collection,
                )
                existing = [p for p in client.list_partitions(self._collection) if p.startswith("b")]
                if existing:
                    self._partitions = len(existing)
                client.load_collection(self._collection)
                return
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=300)
            schema.add_field("cube_id", DataType.VARCHAR, max_length=128)
            schema.add_field("memory_id", DataType.VARCHAR, max_length=128)
            schema.add_field("version", DataType.INT64)
            schema.add_field("kind", DataType.VARCHAR, max_length=16)
            schema.add_field("status", DataType.VARCHAR, max_length=16)
            schema.add_field("memory_type", DataType.VARCHAR, max_length=64)
            schema.add_field(
                "tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=256, max_length=128
            )
            schema.add_field("created_at_ms", DataType.INT64)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self._meta.dim)
            index = client.prepare_index_params()
            index.add_index(field_name="vector", index_type="HNSW", metric_type="COSINE", params=dict(_HNSW))
            client.create_collection(
                self._collection,
                schema=schema,
                index_params=index,
                properties={_META_EMBEDDER: self._meta.embedder, _META_DIM: str(self._meta.dim)},
            )
            for p in range(self._partitions):
                client.create_partition(self._collection, f"b{p}")
            client.load_collection(self._collection)

        self._call("create collection", create)

    def upsert(self, rows: Sequence[IndexedMemory]) -> None:
        by_partition = _records(rows, self._partitions, self._meta.dim, self._uri)
        for partition, records in by_partition.items():
            for start in range(0, len(records), _CHUNK):
                chunk = records[start : start + _CHUNK]
                self._call(
                    "upsert",
                    lambda c, chunk=chunk, p=partition: c.upsert(self._collection, chunk, partition_name=p),
                )

    def delete(self, keys: Iterable[IndexKey]) -> None:
        pks = [k.pk for k in keys]
        for start in range(0, len(pks), _CHUNK):
            chunk = pks[start : start + _CHUNK]
            self._call("delete", lambda c, chunk=chunk: c.delete(self._collection, ids=chunk))

    def flush(self) -> None:
        self._call("flush", lambda c: c.flush(self._collection))

    def search(
        self, vector: npt.NDArray[np.float32], *, cube_ids: Sequence[str], expression: str, limit: int
    ) -> list[VectorHit]:
        if not cube_ids or limit <= 0:
            return []
        partitions = sorted({partition_of(c, self._partitions) for c in cube_ids})
        result = self._call(
            "search",
            lambda c: c.search(
                self._collection,
                data=[vector.tolist()],
                limit=limit,
                filter=expression,
                output_fields=["pk"],
                partition_names=partitions,
                search_params={"metric_type": "COSINE", "params": {"ef": _ef(limit)}},
            ),
        )
        return [VectorHit(IndexKey.parse(str(hit["pk"])), float(hit["distance"])) for hit in result[0]]

    def row_keys(self) -> set[IndexKey]:
        out: set[IndexKey] = set()
        iterator = self._call(
            "list keys",
            lambda c: c.query_iterator(self._collection, batch_size=8192, filter="", output_fields=["pk"]),
        )
        try:
            while batch := self._call("list keys", lambda c: iterator.next()):
                out.update(IndexKey.parse(str(row["pk"])) for row in batch)
        finally:
            iterator.close()
        return out

    def count(self) -> int:
        return len(self.row_keys())

    def drop(self) -> None:
        def drop(c: Any) -> None:
            if c.has_collection(self._collection):
                c.drop_collection(self._collection)

        self._call("drop collection", drop)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def open_vector_index(serving: ServingSettings, models: ModelSettings) -> VectorIndex:
    """A server URI (http, https, tcp, grpc) goes through pymilvus; anything else is a Lite folder."""
    meta = IndexMeta(embedder=models.embedder, dim=models.embedding_dim)
    uri = serving.milvus_uri
    if uri.split("://", 1)[0] in {"http", "https", "tcp", "grpc", "unix"} and "://" in uri:
        return MilvusVectorIndex(
            uri,
            collection=serving.milvus_collection,
            meta=meta,
            partitions=serving.milvus_partitions,
            token=serving.milvus_token,
        )
    return MilvusLiteVectorIndex(
        uri, collection=serving.milvus_collection, meta=meta, partitions=serving.milvus_partitions
    )
