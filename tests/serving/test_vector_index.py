"""One contract for `VectorIndex`, run against every adapter (Milvus Lite embedded, pymilvus)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from memlake.errors import ConfigError
from memlake.model import MemoryKind, MemoryStatus
from memlake.settings import ModelSettings, ServingSettings
from serving.filters import MemoryFilter
from serving.milvus import MilvusLiteVectorIndex, MilvusVectorIndex, open_vector_index
from serving.vector_index import IndexedMemory, IndexKey, IndexMeta, VectorIndex, partition_of

pytestmark = pytest.mark.integration

DIM = 8
META = IndexMeta(embedder="test-embedder", dim=DIM)


def make(kind: str, path: Path, *, meta: IndexMeta = META) -> VectorIndex:
    if kind == "lite":
        return MilvusLiteVectorIndex(str(path / "lite.db"), collection="mem", meta=meta, partitions=4)
    return MilvusVectorIndex(str(path / "client.db"), collection="mem", meta=meta, partitions=4)


@pytest.fixture(params=["lite", "pymilvus"])
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def index(adapter: str, tmp_path: Path) -> Iterator[VectorIndex]:
    idx = make(adapter, tmp_path)
    idx.ensure()
    yield idx
    idx.close()


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def row(cube: str, mid: str, vector: np.ndarray, *, version: int = 1, **fields: object) -> IndexedMemory:
    return IndexedMemory(
        key=IndexKey(cube, mid, version),
        kind=str(fields.get("kind", "plaintext")),
        status=str(fields.get("status", "active")),
        memory_type=str(fields.get("memory_type", "fact")),
        tags=tuple(fields.get("tags", ())),  # type: ignore[arg-type]
        created_at_ms=int(fields.get("created_at_ms", 1000)),  # type: ignore[arg-type]
        vector=vector,
    )


def expr(cubes: list[str], **kw: object) -> str:
    return MemoryFilter(**kw).milvus_expression(cubes)  # type: ignore[arg-type]


def test_search_finds_the_nearest_within_the_cubes_asked_for(index: VectorIndex) -> None:
    q = unit(1)
    index.upsert([row("c1", "near", q), row("c1", "far", unit(2)), row("c2", "other", q)])
    index.flush()
    hits = index.search(q, cube_ids=["c1"], expression=expr(["c1"]), limit=10)
    assert [h.key.memory_id for h in hits] == ["near", "far"]
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-4)
    both = index.search(q, cube_ids=["c1", "c2"], expression=expr(["c1", "c2"]), limit=2)
    assert {h.key.memory_id for h in both} == {"near", "other"}
    assert index.search(q, cube_ids=[], expression="", limit=5) == []


def test_unflushed_rows_are_searchable_too(index: VectorIndex) -> None:
    index.upsert([row("c1", "m", unit(3))])
    assert [
        h.key.memory_id for h in index.search(unit(3), cube_ids=["c1"], expression=expr(["c1"]), limit=3)
    ] == ["m"]


def test_filters_push_down(index: VectorIndex) -> None:
    q = unit(4)
    index.upsert(
        [
            row("c1", "tagged", q, tags=("work",), created_at_ms=5_000),
            row("c1", "archived", q, status="archived"),
            row("c1", "adapter", q, kind="parametric"),
            row("c1", "old", q, created_at_ms=10),
        ]
    )
    index.flush()

    def ids(**kw: object) -> set[str]:
        return {
            h.key.memory_id for h in index.search(q, cube_ids=["c1"], expression=expr(["c1"], **kw), limit=10)
        }

    assert ids() == {"tagged", "adapter", "old"}
    assert ids(tags_any=frozenset({"work"})) == {"tagged"}
    assert ids(statuses=frozenset({MemoryStatus.ARCHIVED})) == {"archived"}
    assert ids(kinds=frozenset({MemoryKind.PARAMETRIC})) == {"adapter"}
    from datetime import UTC, datetime

    assert ids(created_after=datetime.fromtimestamp(1, tz=UTC)) == {"tagged", "adapter"}


def test_non_ascii_values_push_down_as_written(index: VectorIndex) -> None:
    # json.dumps' default `\\u00e9` escapes are not Milvus syntax: a non-ASCII tag made a 503.
    q = unit(8)
    index.upsert(
        [
            row("c1", "fr", q, tags=("café", "1P\u00e9"), memory_type="note"),
            row("c1", "zh", q, tags=("漢字 🎉",)),
        ]
    )
    index.flush()

    def ids(**kw: object) -> set[str]:
        return {
            h.key.memory_id for h in index.search(q, cube_ids=["c1"], expression=expr(["c1"], **kw), limit=10)
        }

    assert ids(tags_any=frozenset({"café"})) == {"fr"}
    assert ids(tags_all=frozenset({"1P\u00e9", "café"})) == {"fr"}
    assert ids(tags_any=frozenset({"漢字 🎉"})) == {"zh"}


def test_delete_and_keys(index: VectorIndex) -> None:
    index.upsert([row("c1", "a", unit(5)), row("c1", "a", unit(6), version=2), row("c2", "b", unit(7))])
    index.flush()
    assert index.row_keys() == {IndexKey("c1", "a", 1), IndexKey("c1", "a", 2), IndexKey("c2", "b", 1)}
    index.delete([IndexKey("c1", "a", 1)])
    assert index.row_keys() == {IndexKey("c1", "a", 2), IndexKey("c2", "b", 1)}
    assert index.count() == 2
    hits = index.search(unit(5), cube_ids=["c1"], expression=expr(["c1"]), limit=5)
    assert [h.key for h in hits] == [IndexKey("c1", "a", 2)]


def test_upsert_replaces_a_row_with_the_same_key(index: VectorIndex) -> None:
    index.upsert([row("c1", "a", unit(8))])
    index.upsert([row("c1", "a", unit(9))])
    index.flush()
    assert index.count() == 1
    assert index.search(unit(9), cube_ids=["c1"], expression=expr(["c1"]), limit=1)[
        0
    ].similarity == pytest.approx(1.0, abs=1e-4)


def test_rows_survive_a_reopen_and_drop_empties(adapter: str, tmp_path: Path) -> None:
    first = make(adapter, tmp_path)
    first.ensure()
    first.upsert([row("c1", "a", unit(10))])
    first.flush()
    first.close()
    second = make(adapter, tmp_path)
    second.ensure()
    assert second.row_keys() == {IndexKey("c1", "a", 1)}
    second.drop()
    second.ensure()
    assert second.row_keys() == set()
    second.close()


def test_a_collection_built_with_another_embedder_is_refused(adapter: str, tmp_path: Path) -> None:
    first = make(adapter, tmp_path)
    first.ensure()
    first.close()
    other = make(adapter, tmp_path, meta=IndexMeta(embedder="another", dim=DIM))
    with pytest.raises(ConfigError, match="index rebuild"):
        other.ensure()
    other.close()


def test_partitions_are_stable_and_the_factory_picks_by_uri(tmp_path: Path) -> None:
    assert partition_of("cube-x", 64) == partition_of("cube-x", 64)
    models = ModelSettings()
    lite = open_vector_index(ServingSettings(milvus_uri=str(tmp_path / "m.db")), models)
    server = open_vector_index(ServingSettings(milvus_uri="http://milvus:19530"), models)
    assert isinstance(lite, MilvusLiteVectorIndex)
    assert isinstance(server, MilvusVectorIndex)
