"""Cube states kept between micro-batches: the bound, the watermark rule, and tables identical
to a materialization that reads every prior state from the lake."""

from __future__ import annotations

import pytest

from benchmarks._lake_workload import generate
from lake.schemas import DERIVED_TABLES
from lake.state import LoadedState
from lake.tables import Lake
from memlake.fold import CubeState, fold
from memlake.settings import Settings
from pipelines.folding import LoggedEvent, fold_cube
from pipelines.follow import run_jobs
from pipelines.state_cache import KeptState, StateCache, changes_only, drop_state_cache, keep, state_cache
from tests.memlake import builders as b
from tests.pipelines.helpers import (
    assert_same_tables,
    expected_memories,
    lake_memories,
    produce,
    pure_fold,
    with_pipelines,
    with_root,
)


def _kept(watermark: int, versions: int) -> KeptState:
    return KeptState(watermark, CubeState(), {}, versions)


def test_a_kept_state_answers_only_at_its_watermark() -> None:
    cache = StateCache(max_versions=100)
    cache.put("c", _kept(7, 10))
    assert cache.get("c", 6) is None  # a batch starting elsewhere (a crash, a restore) reads the lake
    assert cache.get("c", 7) is not None
    assert (cache.hits, cache.misses) == (1, 1)


def test_the_bound_evicts_the_least_recently_used_and_refuses_what_never_fits() -> None:
    cache = StateCache(max_versions=100)
    cache.put("a", _kept(1, 40))
    cache.put("b", _kept(1, 40))
    assert cache.get("a", 1) is not None  # "b" is now the least recently used
    cache.put("c", _kept(1, 40))
    assert cache.get("b", 1) is None
    assert cache.get("a", 1) is not None
    assert cache.get("c", 1) is not None
    assert cache.held_versions == 80
    cache.put("huge", _kept(1, 101))
    assert cache.get("huge", 1) is None
    assert cache.held_versions == 80
    cache.put("a", _kept(2, 10))  # replacing counts the new size only
    assert cache.held_versions == 50
    cache.forget("a")
    assert cache.held_versions == 40


def test_states_left_behind_are_dropped_and_idle_cubes_move_on_with_the_batch() -> None:
    cache = StateCache(max_versions=100)
    cache.put("old", _kept(3, 10))  # its cube had events in batch (3, 5] that did not keep it
    cache.put("idle", _kept(5, 20))
    cache.put("busy", _kept(5, 30))
    assert cache.retain(5, 9) == 50  # the batch (5, 9]: its cut and its end
    assert cache.get("old", 3) is None
    cache.advance(["idle", "old"], 5, 9)  # no events for them in (5, 9]
    assert cache.get("idle", 9) is not None
    assert cache.get("busy", 9) is None  # only what the batch had no events for moves on
    assert sorted(cache.cube_ids()) == ["busy", "idle"]
    cache.advance(["idle"], 5, 12)  # kept at 9 now, not 5: not moved
    assert cache.get("idle", 12) is None


def test_keep_empties_the_judged_ids_and_records_who_made_each_version() -> None:
    clock = b.Clock()
    events = [
        b.created(at=clock()),
        b.added("m1", at=clock()),
        b.updated("m1", at=clock(), content={"text": "v2"}),
    ]
    state = fold(CubeState(), events).state
    rows = [
        {"memory_id": "m1", "version": 1, "event_id": "e1", "event_type": "memory.added"},
        {"memory_id": "m1", "version": 2, "event_id": "e2", "event_type": "memory.updated"},
    ]
    kept = keep(9, state, LoadedState(CubeState(), complete=True), rows)
    assert kept.state.applied == frozenset()
    assert kept.versions == 2 + 1  # m1's two versions; of the cube's three, the one that changed more
    assert kept.made_by[("m1", 2)] == ("e2", "memory.updated")
    loaded = kept.loaded({"x"}, {"y"})
    assert loaded.complete
    assert loaded.state.applied == {"x"}
    assert loaded.state.refused == {"y"}
    assert loaded.loaded_history == state.history


def test_a_kept_state_holds_the_cube_versions_a_whole_read_has_and_folds_a_rollback_the_same() -> None:
    clock = b.Clock()
    first = [
        b.created(at=clock()),
        b.policy_changed(at=clock(), ttl_seconds=60),
        b.added("m1", at=clock()),
        b.added("m2", at=clock()),
        b.policy_changed(at=clock(), ttl_seconds=120),
        b.updated("m1", at=clock(), content={"text": "v2"}),
    ]
    state = fold(CubeState(), first).state
    kept = keep(9, state, LoadedState(CubeState(), complete=True), [])
    # Memory events move the version only: what the lake stores `cube_json` for is kept.
    assert [c.version for c in kept.state.cube_history] == [1, 2, 5]
    assert kept.state.cube_history == changes_only(state.cube_history)
    assert kept.versions == 3 + 3  # m1's two versions, m2's one; three cube versions

    second = [b.rolled_back(4, at=clock()), b.added("m3", at=clock()), b.rolled_back(2, at=clock())]
    logged = [LoggedEvent(e, "{}", 10, "t", 0, 100 + i, clock()) for i, e in enumerate(second)]
    whole = fold_cube(LoadedState(state, state.history, {}, complete=True), logged, buckets=8)
    from_kept = fold_cube(kept.loaded(set(), set()), logged, buckets=8)
    for name in DERIVED_TABLES:
        assert from_kept.table(name) == whole.table(name), name
    assert from_kept.state is not None
    assert whole.state is not None
    assert from_kept.state.cube == whole.state.cube
    assert from_kept.state.cube.policy.ttl_seconds == 60  # the policy at version 2


def test_per_process_caches_are_per_lake_root() -> None:
    assert state_cache("/lake/one", 10) is state_cache("/lake/one", 10)
    assert state_cache("/lake/one", 10) is not state_cache("/lake/two", 10)
    kept = state_cache("/lake/one", 10)
    kept.put("c", _kept(1, 5))
    drop_state_cache("/lake/one")  # a rebuilt lake, compared and done with
    assert state_cache("/lake/one", 10) is not kept
    assert state_cache("/lake/one", 10).get("c", 1) is None


@pytest.mark.integration
def test_many_small_batches_with_kept_states_give_the_tables_of_lake_reads(settings: Settings) -> None:
    # Rollbacks, erasures, merges, duplicates and refused events across 5 batches.
    events = generate(500, cubes=4, seed=21)
    produce(settings.kafka, events)
    kept = with_pipelines(with_root(settings, f"{settings.lake.root}-kept"), batch_max_events=100)
    read = with_pipelines(
        with_root(settings, f"{settings.lake.root}-read"), batch_max_events=100, state_cache_versions=0
    )
    cache = state_cache(kept.lake.root, kept.pipelines.state_cache_versions)
    run_jobs(kept)
    run_jobs(read)
    assert cache.hits > 0  # the kept states were used, not just stored
    assert_same_tables(Lake(kept.lake), Lake(read.lake))
    assert lake_memories(Lake(kept.lake)) == expected_memories(pure_fold(events))
