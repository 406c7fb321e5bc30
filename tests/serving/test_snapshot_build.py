"""The snapshot as a value: full builds, incremental builds from a change set, ACL checks on it."""

from __future__ import annotations

import pytest

from memlake.errors import CubeNotFoundError, MemoryNotFoundError, PermissionDeniedError
from memlake.model import MemoryKind, MemoryStatus, SourceRef, Visibility
from serving.acl import Action, authorize, readable_cube, readable_memory
from serving.keeper import _key_changes
from serving.snapshot import ChangeSet, LakeCut, ServingSnapshot
from serving.vector_index import IndexKey
from tests.serving.builders import OWNER, READER, STRANGER, T0, WRITER, cube, memory

CUBE = cube("cube-a")
OTHER = cube("cube-b", owner=STRANGER, readers=())


def full() -> ServingSnapshot:
    cut = LakeCut(
        watermark=3,
        table_versions={"memories": 5, "cubes": 2},
        cubes=(CUBE, OTHER),
        memories=(
            memory("m1", "alpha tea", tags=("drink",)),
            memory("m2", "beta coffee", pinned=True),
            memory("gone", "deleted text", status=MemoryStatus.DELETED),
            memory(
                "adapter", None, kind=MemoryKind.PARAMETRIC, lineage=(SourceRef(memory_id="m1", version=1),)
            ),
            memory("secret", "gamma", visibility=Visibility.PRIVATE),
            memory("o1", "other cube", cube_id="cube-b"),
        ),
    )
    return ServingSnapshot.build(cut, covered={0: 10}, opener=None, now=T0)


def test_a_full_build_indexes_searchable_memories_only() -> None:
    snap = full()
    shard = snap.shards["cube-a"]
    assert set(shard.texts) == {"m1", "m2", "adapter", "secret"}
    assert "alpha tea" in shard.texts["adapter"]  # found by what it encodes
    assert shard.pinned == ("m2",)
    assert [h.key.memory_id for h in shard.lexical.search("tea", limit=5)] == ["m1", "adapter"]
    assert snap.live(IndexKey("cube-a", "m1", 1)) is not None
    assert snap.live(IndexKey("cube-a", "m1", 2)) is None  # another version
    assert snap.live(IndexKey("cube-a", "gone", 1)) is None
    assert snap.covers(0, 10)
    assert not snap.covers(0, 11)
    assert not snap.covers(1, 0)
    assert snap.memory_count() == 6


def test_an_incremental_build_equals_a_full_build_and_shares_untouched_cubes() -> None:
    old = full()
    changes = ChangeSet(
        watermark=4,
        table_versions={"memories": 6, "cubes": 2},
        memories=(memory("m1", "alpha green tea", version=2), memory("m3", "delta")),
        removed_memories=(("cube-a", "secret"),),
    )
    new = ServingSnapshot.build(changes, covered={0: 12}, opener=None, now=T0, previous=old)
    assert new.version == 4
    assert new.shards["cube-b"] is old.shards["cube-b"]
    assert old.shards["cube-a"].memories["m1"].version == 1  # the old snapshot is untouched
    assert new.shards["cube-a"].memories["m1"].version == 2
    assert "secret" not in new.shards["cube-a"].memories
    added, removed = _key_changes(old, new)
    assert added == {IndexKey("cube-a", "m1", 2), IndexKey("cube-a", "m3", 1)}
    assert removed == {IndexKey("cube-a", "m1", 1), IndexKey("cube-a", "secret", 1)}


def test_a_change_of_read_counters_keeps_the_indexes() -> None:
    old = full()
    read = memory("m1", "alpha tea", tags=("drink",), access_count=3, last_accessed_at=T0)
    changes = ChangeSet(watermark=4, table_versions={"memories": 6, "cubes": 2}, memories=(read,))
    new = ServingSnapshot.build(changes, covered={}, opener=None, now=T0, previous=old)
    assert new.shards["cube-a"].lexical is old.shards["cube-a"].lexical
    assert new.shards["cube-a"].memories["m1"].indicators.access_count == 3
    assert _key_changes(old, new) == (set(), set())


def test_deleting_a_memory_removes_its_key() -> None:
    old = full()
    changes = ChangeSet(
        watermark=4,
        table_versions={"memories": 6, "cubes": 2},
        memories=(memory("m2", "beta coffee", version=2, status=MemoryStatus.DELETED),),
    )
    new = ServingSnapshot.build(changes, covered={}, opener=None, now=T0, previous=old)
    assert _key_changes(old, new) == (set(), {IndexKey("cube-a", "m2", 1)})
    assert new.shards["cube-a"].pinned == ()


def test_acl_checks_on_a_snapshot() -> None:
    snap = full()
    assert readable_cube(snap, "cube-a", READER) is snap.shards["cube-a"].cube
    for missing in ("cube-b", "nope"):
        with pytest.raises(CubeNotFoundError):
            readable_cube(snap, missing, READER)
    assert authorize(snap, "cube-a", WRITER, Action.WRITE)
    with pytest.raises(PermissionDeniedError):
        authorize(snap, "cube-a", READER, Action.WRITE)
    with pytest.raises(PermissionDeniedError):
        authorize(snap, "cube-a", WRITER, Action.ROLL_BACK)
    with pytest.raises(PermissionDeniedError):
        authorize(snap, "cube-a", WRITER, Action.CHANGE_ACL)
    assert authorize(snap, "cube-a", OWNER, Action.CHANGE_POLICY)
    with pytest.raises(CubeNotFoundError):
        authorize(snap, "cube-a", STRANGER, Action.READ)
    assert readable_memory(snap, "cube-a", "secret", WRITER).memory_id == "secret"
    with pytest.raises(MemoryNotFoundError):
        readable_memory(snap, "cube-a", "secret", READER)
