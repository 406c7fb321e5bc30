"""land + materialize against the real broker and real Delta tables."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from benchmarks._lake_workload import Workload, generate, invalid_records
from lake.compare import compare_table
from lake.history import memory_history
from lake.maintenance import restore
from lake.schemas import DERIVED_TABLES
from lake.tables import Lake
from lake.time_travel import as_of, current, version_at
from memlake.cli import main
from memlake.events import CubeCreated, MemoryAdded, MemoryDeleted, MemoryUpdated, new_event, parse_event
from memlake.fold import memories_at
from memlake.model import Actor, ActorKind
from memlake.settings import LakeSettings, Settings
from pipelines.follow import run_jobs
from pipelines.land import run_land
from pipelines.materialize import FoldShard
from pipelines.rebuild import run_rebuild
from streams.dead_letters import read_dead_letters
from streams.reader import OffsetRange, end_offsets, read_range
from tests.memlake import builders as b
from tests.pipelines.helpers import (
    PORTABLE,
    PROCESSES,
    assert_same_tables,
    expected_memories,
    lake_memories,
    produce,
    pure_fold,
    with_pipelines,
    with_root,
)

pytestmark = pytest.mark.integration


def _small(settings: Settings, batch: int = 400) -> Settings:
    return with_pipelines(settings, batch_max_events=batch)


def test_land_and_materialize_give_the_pure_fold_and_bad_records_go_to_the_dlq(settings: Settings) -> None:
    events = generate(1200, cubes=12, seed=3)
    bad = invalid_records(4)
    produce(settings.kafka, events[:600], raw=bad)
    produce(settings.kafka, events[600:])
    done = run_jobs(_small(settings))

    lake = Lake(settings.lake)
    results = pure_fold(events)
    assert lake_memories(lake) == expected_memories(results)
    assert done.dead_letters == 4
    assert done.landed == 1200
    assert done.batches >= 3  # several micro-batches, so state crossed batch boundaries
    rejected = lake.table("rejected").to_pyarrow_table(columns=["event_id"]).num_rows
    assert rejected == sum(len(r.rejected) for r in results.values())
    letters = read_dead_letters(settings.kafka)
    assert len(letters) == 4
    assert {letter.original for letter in letters} == {value for _, value in bad}
    assert all(letter.reason and letter.stage == "land" for letter in letters)
    assert all(letter.source_offset is not None for letter in letters)


def test_replayed_offsets_and_duplicate_events_change_nothing(settings: Settings) -> None:
    events = generate(500, cubes=5, seed=5, duplicate_rate=0.0)
    produce(settings.kafka, events)
    first = run_land(settings)
    run_jobs(settings)
    lake = Lake(settings.lake)
    before = {name: lake.version(name) for name in ("events", *DERIVED_TABLES)}

    replay = run_land(settings, ranges=first.ranges)  # the same offsets again
    assert replay.events == 0
    assert lake.version("events") == before["events"]

    produce(settings.kafka, events[100:300])  # a product re-sending what it already sent
    run_jobs(settings)
    assert lake.version("events") > before["events"]  # the log holds the copies ...
    for name in DERIVED_TABLES:  # ... and no derived table shows them
        difference = compare_table(lake, before[name], lake, lake.version(name), name)
        assert difference.equal, difference
    assert lake_memories(lake) == expected_memories(pure_fold(events))


def test_time_travel_and_rollback_return_exactly_the_pure_fold(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = Actor(kind=ActorKind.USER, id="alice")
    cube = "cube-travel"
    t0 = Workload().start

    def at(seconds: int) -> object:
        return t0 + timedelta(seconds=seconds)

    events = [
        new_event(CubeCreated, cube_id=cube, actor=owner, payload={"name": "travel"}, occurred_at=at(0)),
        new_event(MemoryAdded, cube_id=cube, actor=owner, memory_id="a", occurred_at=at(1),
                  payload={"content": {"text": "likes tea"}}),
        new_event(MemoryAdded, cube_id=cube, actor=owner, memory_id="b", occurred_at=at(2),
                  payload={"content": {"text": "lives in Paris"}}),
        new_event(MemoryUpdated, cube_id=cube, actor=owner, memory_id="a", occurred_at=at(3),
                  payload={"content": {"text": "likes coffee"}}),
        new_event(MemoryDeleted, cube_id=cube, actor=owner, memory_id="b", occurred_at=at(4), payload={}),
        new_event(MemoryAdded, cube_id=cube, actor=owner, memory_id="c", occurred_at=at(5),
                  payload={"content": {"text": "plays chess"}}),
    ]  # fmt: skip
    produce(settings.kafka, events[:3])
    run_jobs(settings)
    produce(settings.kafka, events[3:])
    run_jobs(settings)

    for name, value in {
        "BOOTSTRAP": settings.kafka.bootstrap,
        "EVENTS_TOPIC": settings.kafka.events_topic,
        "DLQ_TOPIC": settings.kafka.dlq_topic,
    }.items():
        monkeypatch.setenv(f"MEMLAKE_KAFKA_{name}", value)
    monkeypatch.setenv("MEMLAKE_LAKE_ROOT", settings.lake.root)
    assert main(["rollback", cube, "--to-version", "3", "--actor", "user:alice"]) == 0
    run_jobs(settings)

    log = []
    for partition, end in end_offsets(settings.kafka, settings.kafka.events_topic).items():
        span = OffsetRange(settings.kafka.events_topic, partition, 0, end)
        log.extend(parse_event(r.value or b"") for r in read_range(settings.kafka, span))
    state = pure_fold(log)[cube].state
    assert state.version == 7  # the rollback is a version of its own

    lake = Lake(settings.lake)
    for version in range(1, state.version + 1):
        view = as_of(lake, cube, version=version)
        assert view.memories == memories_at(state, version), version
        assert view.cube is not None
        assert view.cube.version == version
    now = current(lake, cube)
    assert now.memories == dict(state.memories)
    assert {m.memory_id for m in now.live()} == {"a", "b"}  # back to version 3
    assert now.memories["a"].content is not None
    assert now.memories["a"].content.text == "likes tea"
    history = [v.memory.status.value for v in memory_history(lake, "b", cube_id=cube)]
    assert history == ["active", "deleted", "active"]  # history still shows everything

    cube_versions = lake.table("cube_versions").to_pyarrow_table(columns=["version", "logged_at"])
    logged = dict(zip(*(cube_versions.column(c).to_pylist() for c in ("version", "logged_at")), strict=True))
    assert version_at(lake, cube, logged[4]) >= 4
    assert version_at(lake, cube, logged[1] - timedelta(microseconds=1)) == 0
    assert as_of(lake, cube, timestamp=logged[5]).memories == memories_at(
        state, version_at(lake, cube, logged[5])
    )


def test_restore_of_a_derived_table_then_a_run_converges(settings: Settings) -> None:
    events = generate(900, cubes=9, seed=9)
    produce(settings.kafka, events[:300])
    run_jobs(settings)
    lake = Lake(settings.lake)
    early = {name: lake.version(name) for name in DERIVED_TABLES}
    produce(settings.kafka, events[300:])
    run_jobs(_small(settings, 250))
    assert lake.watermark("memories") > lake.watermark("usage") - 1

    restore(lake, "memories", version=early["memories"])
    restore(lake, "usage", version=early["usage"])
    assert lake.watermark("memories") < lake.watermark("cubes")  # the watermark went back with it
    run_jobs(settings)
    assert len(set(lake.watermarks(DERIVED_TABLES).values())) == 1
    assert lake_memories(lake) == expected_memories(pure_fold(events))
    result = run_rebuild(settings, verify=True)
    assert result.equal, result.differences
    assert not result.kept
    assert not Path(result.root).exists()  # under a local root the rebuilt tables are removed


def test_an_erasure_after_a_restore_rewrites_the_versions_the_table_ran_ahead_with(
    settings: Settings,
) -> None:
    """`memories` restored behind `memory_versions`: the next run folds the batches between
    again, and the erasure among them must shred the versions the table already holds."""
    clock = b.Clock()
    first = [b.created(at=clock()), b.added("m1", "bob likes tea", at=clock(), subject_id="bob")]
    produce(settings.kafka, first)
    run_jobs(settings)
    lake = Lake(settings.lake)
    early = lake.version("memories")
    second = [
        b.updated("m1", at=clock(), tags=["x"]),
        b.added("m2", "bob likes jazz", at=clock(), subject_id="bob"),
    ]
    produce(settings.kafka, second)
    run_jobs(settings)

    restore(lake, "memories", version=early)
    erased = [b.erased("bob", at=clock())]
    produce(settings.kafka, erased)
    run_jobs(settings)

    versions = lake.table("memory_versions").to_pyarrow_table(columns=["memory_id", "version", "text"])
    assert sorted(zip(*(versions.column(c).to_pylist() for c in ("memory_id", "version")), strict=True)) == [
        ("m1", 1),
        ("m1", 2),
        ("m1", 3),
        ("m2", 1),
        ("m2", 2),
    ]
    assert versions.column("text").null_count == versions.num_rows  # bob's words are nowhere
    assert lake_memories(lake) == expected_memories(pure_fold(first + second + erased))
    result = run_rebuild(settings, verify=True)
    assert result.equal, result.differences


def test_in_process_and_multi_processing_runners_give_identical_tables(
    settings: Settings, tmp_path: object
) -> None:
    events = generate(600, cubes=8, seed=13)
    produce(settings.kafka, events, raw=invalid_records(2))
    one = with_root(settings, f"{settings.lake.root}-inprocess")
    two = with_root(settings, f"{settings.lake.root}-multiprocess")
    run_jobs(one)
    run_jobs(two, beam_args=PROCESSES)
    assert_same_tables(Lake(one.lake), Lake(two.lake))
    assert lake_memories(Lake(two.lake)) == expected_memories(pure_fold(events))


def test_the_portable_runner_gives_the_tables_of_the_direct_runner(settings: Settings) -> None:
    events = generate(600, cubes=8, seed=17)
    produce(settings.kafka, events, raw=invalid_records(2))
    direct = with_root(settings, f"{settings.lake.root}-direct")
    portable = with_root(settings, f"{settings.lake.root}-portable")
    run_jobs(_small(direct, 250))
    done = run_jobs(_small(portable, 250), beam_args=PORTABLE)
    assert done.batches >= 3
    assert (done.landed, done.dead_letters) == (600, 2)
    assert_same_tables(Lake(direct.lake), Lake(portable.lake))
    assert lake_memories(Lake(portable.lake)) == expected_memories(pure_fold(events))


def test_a_rebuild_keeps_cube_states_as_its_own_setting_says(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild's batches span every cube: it folds with `rebuild_state_cache_versions`,
    not the followers' `state_cache_versions`, and still rebuilds the same tables."""
    events = generate(300, cubes=4, seed=21)
    produce(settings.kafka, events)
    run_jobs(settings)
    kept: list[int] = []
    original = FoldShard.__init__

    def recording(self: FoldShard, lake: LakeSettings, cache_versions: int = 0) -> None:
        kept.append(cache_versions)
        original(self, lake, cache_versions)

    monkeypatch.setattr(FoldShard, "__init__", recording)
    tuned = settings.model_copy(
        update={
            "pipelines": settings.pipelines.model_copy(
                update={"state_cache_versions": 5000, "rebuild_state_cache_versions": 777}
            )
        }
    )
    result = run_rebuild(tuned, verify=True)
    assert result.equal, result.differences
    assert set(kept) == {777}
    kept.clear()
    assert run_rebuild(settings, verify=True).equal
    assert set(kept) == {0}  # the default: none kept
