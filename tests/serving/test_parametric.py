"""Which KV cache a chat may continue: the cube's activation memory, checked against caller and snapshot."""

from __future__ import annotations

from typing import Any

from memlake.model import Memory, MemoryKind, MemoryStatus, SourceRef, Visibility
from serving.parametric import ParametricUse, choose_activation
from serving.snapshot import LakeCut, ServingSnapshot
from tests.serving.builders import OWNER, READER, STRANGER, T0, cube, hours, memory

SOURCES = (SourceRef(memory_id="m-pin", version=2), SourceRef(memory_id="m-hot", version=1))


def snapshot(*memories: Memory) -> ServingSnapshot:
    cut = LakeCut(
        watermark=3,
        table_versions={"memories": 3, "cubes": 1},
        cubes=(cube(),),
        memories=memories,
    )
    return ServingSnapshot.build(cut, covered={0: 3}, opener=None, now=T0)


def kv(**fields: Any) -> Memory:
    return memory("memlake.kv-cache", kind=MemoryKind.ACTIVATION, lineage=SOURCES, **fields)


def test_the_cache_comes_with_the_current_versions_of_what_it_encodes() -> None:
    snap = snapshot(kv(), memory("m-pin", version=3, pinned=True), memory("m-hot"), memory("m-other"))
    choice = choose_activation(snap, cube_id="cube-a", principal=READER)
    assert choice.memory is not None
    assert choice.memory.memory_id == "memlake.kv-cache"
    # m-pin moved on to version 3: the shelf compares that with the version the cache encodes.
    assert choice.live == {"m-pin": 3, "m-hot": 1}
    assert choice.reason is None


def test_a_gone_source_is_left_out_of_the_live_versions() -> None:
    snap = snapshot(kv(), memory("m-pin", version=2), memory("m-hot", status=MemoryStatus.DELETED))
    assert choose_activation(snap, cube_id="cube-a", principal=OWNER).live == {"m-pin": 2}


def test_a_caller_who_may_not_read_an_encoded_memory_gets_no_cache() -> None:
    snap = snapshot(kv(), memory("m-pin", version=2, visibility=Visibility.PRIVATE), memory("m-hot"))
    choice = choose_activation(snap, cube_id="cube-a", principal=READER)
    assert choice.memory is None
    assert choice.reason == "the caller may not read memory m-pin the cache encodes"
    assert choose_activation(snap, cube_id="cube-a", principal=OWNER).memory is not None
    assert choose_activation(snap, cube_id="cube-a", principal=STRANGER).memory is None


def test_no_cache_no_cube_and_the_newest_of_two() -> None:
    assert choose_activation(snapshot(memory("m-pin")), cube_id="cube-a", principal=OWNER).reason == (
        "the cube has no KV cache"
    )
    assert choose_activation(snapshot(), cube_id="elsewhere", principal=OWNER).reason == (
        "the cube is not in the snapshot"
    )
    older = memory("kv-old", kind=MemoryKind.ACTIVATION, lineage=SOURCES)
    newer = memory("kv-new", kind=MemoryKind.ACTIVATION, lineage=SOURCES, updated_at=T0 + hours(1))
    choice = choose_activation(snapshot(older, newer), cube_id="cube-a", principal=OWNER)
    assert choice.memory is not None
    assert choice.memory.memory_id == "kv-new"


def test_an_answer_from_elsewhere_says_no_adapter_and_no_cache() -> None:
    described = ParametricUse.describe(None)
    assert described["adapter"] is None
    assert described["kv_reused_tokens"] == 0
    assert "without local adapters" in described["adapter_reason"]
    used = ParametricUse(adapter="models:/a/2", kv_reason="an adapter answered")
    assert ParametricUse.describe(used)["adapter"] == used.header == "models:/a/2"
    assert ParametricUse().header == "none"
