"""Snapshot semantics against the real stack: atomic swaps, leased old versions, reconciliation, rebuild."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lake.lease import Lease
from lake.tables import Lake
from memlake.errors import LeaseHeldError
from memlake.model import utcnow
from pipelines.follow import run_jobs
from pipelines.writer_lease import WRITER_LEASE
from serving.filters import MemoryFilter
from serving.keeper import SnapshotKeeper
from serving.milvus import open_vector_index
from serving.service import KafkaOffsetProbe, LakeSnapshotSource
from serving.snapshot import ServingSnapshot
from serving.vector_index import IndexedMemory, IndexKey
from tests.serving.conftest import ROLES, Stack

pytestmark = pytest.mark.integration


def dense_ids(stack: Stack, snapshot: ServingSnapshot, cube: str, query: str) -> list[tuple[str, int]]:
    result = stack.components.retriever.search(
        snapshot,
        principal=ROLES["owner"],
        cube_ids=[cube],
        query=query,
        top_k=5,
        memory_filter=MemoryFilter(),
        now=utcnow(),
        mode="dense",
    )
    return [(h.memory.memory_id, h.memory.version) for h in result.hits]


def test_a_leased_snapshot_keeps_finding_the_versions_it_holds(stack: Stack) -> None:
    keeper = stack.components.keeper
    cube = stack.cube("leases")
    m = stack.remember(cube, "The launch code word is albatross.", settle=True)
    mid = m["memory_id"]
    with keeper.lease() as old:
        assert dense_ids(stack, old, cube, "launch code word") == [(mid, 1)]
        response = stack.client.patch(
            f"/v1/cubes/{cube}/memories/{mid}",
            json={"text": "The launch code word is pelican."},
            headers=stack.headers("owner"),
        )
        stack.settle(response.json())
        new = keeper.current()
        assert new.version > old.version
        assert new.shards[cube].memories[mid].version == 2
        assert old.shards[cube].memories[mid].version == 1  # the old snapshot never changed
        # Both versions are indexed while the old snapshot is still read.
        keys = {k for k in stack.index.row_keys() if k.cube_id == cube}
        assert keys == {IndexKey(cube, mid, 1), IndexKey(cube, mid, 2)}
        assert dense_ids(stack, old, cube, "launch code word") == [(mid, 1)]
        assert dense_ids(stack, new, cube, "launch code word") == [(mid, 2)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        keys = {k for k in stack.index.row_keys() if k.cube_id == cube}
        if keys == {IndexKey(cube, mid, 2)}:
            break
        time.sleep(0.2)
    assert keys == {IndexKey(cube, mid, 2)}


def test_the_index_is_reconciled_on_start_and_rebuilt_from_the_lake(stack: Stack, tmp_path: Path) -> None:
    cube = stack.cube("reconcile")
    stack.remember(cube, "Reconciled memories come back.", settle=True)
    serving = stack.settings.serving.model_copy(update={"milvus_uri": str(tmp_path / "other.db")})
    settings = stack.settings.model_copy(update={"serving": serving})
    probe = KafkaOffsetProbe(settings)
    source = LakeSnapshotSource(
        Lake(settings.lake), topic=settings.kafka.events_topic, partitions=probe.partitions
    )
    embedder = stack.embedder

    first_index = open_vector_index(settings.serving, settings.models)
    first = SnapshotKeeper(source, first_index, embedder, opener=stack.components.opener)
    first.start(follow=False)
    expected = first.current().searchable_keys()
    assert IndexKey(cube, sorted(first.current().shards[cube].texts)[0], 1) in expected
    assert first_index.row_keys() == expected
    dropped = sorted(expected)[0]
    first_index.delete([dropped])
    bogus = IndexKey(cube, "never-existed", 1)
    first_index.upsert(
        [
            IndexedMemory(
                key=bogus,
                kind="plaintext",
                status="active",
                memory_type="fact",
                tags=(),
                created_at_ms=0,
                vector=embedder.embed(["bogus"])[0],
            )
        ]
    )
    first_index.flush()
    first.stop()
    first_index.close()

    second_index = open_vector_index(settings.serving, settings.models)
    second = SnapshotKeeper(source, second_index, embedder, opener=stack.components.opener)
    second.start(follow=False)
    try:
        assert second_index.row_keys() == second.current().searchable_keys()
        written = second.rebuild_index()
        assert written == len(second.current().searchable_keys())
        assert second_index.row_keys() == second.current().searchable_keys()
    finally:
        second.stop()
        second_index.close()
        probe.close()


def test_the_embedded_pipeline_leaves_the_lake_to_the_process_holding_the_writer_lease(
    stack: Stack, tmp_path: Path
) -> None:
    cube = stack.cube("writer-elsewhere")
    stack.remember(cube, "A follower elsewhere keeps this lake current.", settle=True)
    serving = stack.settings.serving.model_copy(update={"milvus_uri": str(tmp_path / "other.db")})
    settings = stack.settings.model_copy(update={"serving": serving})
    probe = KafkaOffsetProbe(settings)
    lake = Lake(settings.lake)
    source = LakeSnapshotSource(lake, topic=settings.kafka.events_topic, partitions=probe.partitions)
    index = open_vector_index(settings.serving, settings.models)
    keeper = SnapshotKeeper(
        source,
        index,
        stack.embedder,
        opener=stack.components.opener,
        pipeline_step=lambda: run_jobs(settings),
    )
    lease = Lease(lake, WRITER_LEASE, seconds=600, holder="materializer-0")
    deadline = time.monotonic() + 60
    while True:
        try:
            lease.acquire()  # once the stack's own embedded pipeline is between two runs
            break
        except LeaseHeldError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    try:
        try:
            keeper.start(follow=False)
            keeper._run_pipeline()  # a second round: nothing more to say
        finally:
            lease.release()
        assert keeper.stats.writer_elsewhere == "materializer-0"
        assert keeper.stats.follow_errors == 0
        assert keeper.stats.pipeline_runs == 0
        assert cube in keeper.current().shards  # it serves what the lake holds
        keeper._run_pipeline()  # the lease released: it lands and materializes again
        assert keeper.stats.writer_elsewhere is None
        assert keeper.stats.pipeline_runs == 1
    finally:
        keeper.stop()
        index.close()
        probe.close()
