"""The lake on real Delta tables: exactly-once writers, consistent cuts, restore, maintenance, SQL.

Events are landed straight into the `events` table here (no broker needed);
materialize then runs its real Beam graph on them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import lake.writer as writer_module
from benchmarks._lake_workload import generate
from lake.compare import compare_table
from lake.history import diff, memory_history
from lake.maintenance import checkpoint, compact, restore, vacuum
from lake.scan import scan
from lake.schemas import DERIVED_TABLES, STATE_TABLES, TABLES, spec
from lake.snapshot import changes, find_cut, open_snapshot, watermark_versions
from lake.sql import query, write_result
from lake.tables import DEAD_LETTERS_KEY, EVENTS_KEY, OFFSETS_KEY, REWRITES_KEY, WRITER_KEY, Head, Lake
from lake.time_travel import as_of
from lake.writer import TableWriter
from memlake.errors import ConcurrentWriteError, LakeError, TimeTravelError
from memlake.events import (
    CubeCreated,
    CubeRolledBack,
    Event,
    MemoryAdded,
    MemoryUpdated,
    SubjectErased,
    new_event,
)
from memlake.model import Actor, ActorKind
from memlake.settings import LakeSettings, Settings
from pipelines.materialize import run_materialize
from pipelines.rebuild import run_rebuild
from tests.pipelines.helpers import (
    assert_same_tables,
    expected_memories,
    lake_memories,
    land_events,
    pure_fold,
)

pytestmark = pytest.mark.integration
TOPIC = "lake-test"


def _settings(root: Path, **lake: object) -> Settings:
    return Settings(lake=LakeSettings(root=str(root), **lake), pipelines={"batch_max_events": 10_000})


def _land(lake: Lake, events: list[Event], *, first_offset: int) -> None:
    land_events(lake, events, topic=TOPIC, first_offset=first_offset)


def _half_materialized(root: Path, *, cubes: int, seed: int) -> tuple[Settings, Lake, list[Event]]:
    """200 events landed in two commits, the first of them materialized."""
    settings = _settings(root)
    lake = Lake(settings.lake)
    events = generate(200, cubes=cubes, seed=seed)
    _land(lake, events[:100], first_offset=0)
    _materialize_all(settings)
    _land(lake, events[100:], first_offset=100)
    return settings, lake, events


def _materialize_all(settings: Settings) -> None:
    while run_materialize(settings).plan is not None:
        pass


def test_event_commits_skip_offsets_already_landed(lake: Lake) -> None:
    events = generate(50, cubes=2)
    _land(lake, events[:30], first_offset=0)
    version = lake.version("events")
    _land(lake, events[:30], first_offset=0)  # a replay: nothing new
    assert lake.version("events") == version
    _land(lake, events[20:50], first_offset=20)  # overlapping: only offsets 30..49 are new
    landed = lake.table("events").to_pyarrow_table(columns=["offset"]).column("offset").to_pylist()
    assert sorted(landed) == list(range(50))
    assert lake.land_offsets(TOPIC, [0]) == {0: 49}


def test_an_event_commit_says_what_it_landed_and_who_landed_it(lake: Lake) -> None:
    # Offsets 0..21: the last two records of the range were dead letters.
    land_events(lake, generate(20, cubes=2), topic=TOPIC, dead_letters=2, writer="run-a")
    land_events(lake, [], topic=TOPIC, first_offset=22, dead_letters=3)
    second, first = lake.commit_log("events", limit=2)
    assert (first[EVENTS_KEY], first[DEAD_LETTERS_KEY], first[WRITER_KEY]) == (20, 2, "run-a")
    assert (second[EVENTS_KEY], second[DEAD_LETTERS_KEY], WRITER_KEY in second) == (0, 3, False)
    assert first[OFFSETS_KEY] == {0: 21}


def test_materialize_is_the_pure_fold_and_a_second_run_does_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "lake")
    lake = Lake(settings.lake)
    events = generate(400, cubes=6, seed=4)
    _land(lake, events[:200], first_offset=0)
    _land(lake, events[200:], first_offset=200)
    _materialize_all(settings)
    assert lake_memories(lake) == expected_memories(pure_fold(events))
    versions = {name: lake.version(name) for name in DERIVED_TABLES}
    assert run_materialize(settings).plan is None
    assert {name: lake.version(name) for name in DERIVED_TABLES} == versions


def test_a_crash_between_table_commits_is_repaired_by_the_next_run(tmp_path: Path) -> None:
    events = generate(600, cubes=6, seed=6)
    steady = _settings(tmp_path / "steady")
    crashed = _settings(tmp_path / "crashed")
    for settings in (steady, crashed):
        lake = Lake(settings.lake)
        _land(lake, events[:300], first_offset=0)
        _materialize_all(settings)
        _land(lake, events[300:], first_offset=300)
        _materialize_all(settings)
    lake = Lake(crashed.lake)
    # As if the second batch had committed memories and cubes, then died before the rest.
    for name in ("memory_versions", "cube_versions", "usage", "rejected"):
        previous = next(e["version"] for e in lake.commit_log(name) if e.get("memlake.watermark") == 1)
        restore(lake, name, version=previous)
    cut = find_cut(lake)
    assert cut.watermark == 1
    assert cut.versions["memories"] is not None
    assert cut.versions["memories"] < lake.version("memories")  # read as of the cut, not the latest
    _materialize_all(crashed)
    assert_same_tables(Lake(steady.lake), lake, DERIVED_TABLES)


def test_merging_one_bucket_at_a_time_gives_the_same_tables_and_no_cut_reads_a_part(tmp_path: Path) -> None:
    events = generate(600, cubes=12, seed=5)
    steady = _settings(tmp_path / "steady")
    parted = _settings(tmp_path / "parted")
    for settings in (steady, parted):
        _land(Lake(settings.lake), events[:300], first_offset=0)
        _materialize_all(settings)
        _land(Lake(settings.lake), events[300:], first_offset=300)
    _materialize_all(steady)
    lake = Lake(parted.lake)
    before = lake.version("memories")
    assert run_materialize(parted, merge_per_bucket=True).plan is not None
    assert run_materialize(parted, merge_per_bucket=True).plan is None
    assert_same_tables(Lake(steady.lake), lake, DERIVED_TABLES)

    # The second batch updates memories in several buckets: a MERGE each, only the last
    # moving the watermark; the others say which batch they are part of.
    log = list(reversed(lake.commit_log("memories", limit=lake.version("memories") - before)))
    assert [entry["operation"] for entry in log] == ["MERGE"] * len(log)
    assert len(log) > 1
    assert all(entry["memlake.part_of"] == "2" and "memlake.watermark" not in entry for entry in log[:-1])
    assert log[-1]["memlake.watermark"] == 2
    # A cut at the first batch reads the table before the parts, not the last of them.
    assert watermark_versions(lake, "memories")[1] == before
    assert find_cut(lake, at_most=1).versions["memories"] == before


def test_a_rebuild_refuses_a_place_that_holds_tables(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "lake")
    _land(Lake(settings.lake), generate(20, cubes=1), first_offset=0)
    with pytest.raises(LakeError, match="holds lake tables already"):
        run_rebuild(settings, into=settings.lake.root)


def test_a_rebuild_refuses_a_place_inside_a_live_table(tmp_path: Path) -> None:
    # Its tables would be files the live table does not track, deleted by its next vacuum.
    settings = _settings(tmp_path / "lake")
    _land(Lake(settings.lake), generate(20, cubes=1), first_offset=0)
    inside = tmp_path / "lake" / "memories" / "rebuilt"
    with pytest.raises(
        LakeError, match=f"{inside} is inside the live table .*/lake/memories: rebuild outside"
    ):
        run_rebuild(settings, into=str(inside))
    with pytest.raises(LakeError, match="is inside the live table"):
        run_rebuild(settings, into=f"{tmp_path}/lake/./events/")  # the same place, written otherwise
    assert not inside.exists()
    with pytest.raises(LakeError, match="is the live lake"):
        run_rebuild(_settings(tmp_path / "empty"), into=str(tmp_path / "empty"))


def _steady_and_crashed(
    tmp_path: Path, first: list[Event], second: list[Event], monkeypatch: pytest.MonkeyPatch
) -> tuple[Settings, Settings]:
    """Two lakes given both batches: one materializes them; the other dies in the second
    one's materialize, after its erasure rewrote `memory_versions` and before anything else."""
    steady = _settings(tmp_path / "steady")
    crashed = _settings(tmp_path / "crashed")
    for settings in (steady, crashed):
        _land(Lake(settings.lake), first, first_offset=0)
        _materialize_all(settings)
        _land(Lake(settings.lake), second, first_offset=len(first))
    _materialize_all(steady)

    real = writer_module._write_rows

    def die_after_the_rewrite(dt: Any, table: Any, rows: pa.Table, **kwargs: Any) -> None:
        if table.name == "memory_versions":
            raise OSError("killed between the rewrite and the append")
        real(dt, table, rows, **kwargs)

    monkeypatch.setattr(writer_module, "_write_rows", die_after_the_rewrite)
    with pytest.raises(Exception, match="killed between the rewrite and the append"):
        run_materialize(crashed)
    monkeypatch.setattr(writer_module, "_write_rows", real)
    return steady, crashed


def test_a_crash_between_an_erasures_rewrite_and_its_batch_is_repaired_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = generate(600, cubes=2, seed=11)  # erases its subject at events 188 and 539
    later = events[300:]
    assert any(isinstance(e, SubjectErased) for e in later)
    steady, crashed = _steady_and_crashed(tmp_path, events[:300], later, monkeypatch)
    lake = Lake(crashed.lake)
    rewrite = lake.commit_log("memory_versions", limit=1)[0]
    assert rewrite["memlake.rewrites_for"] == "2"
    assert lake.watermark("memory_versions") == 1
    _materialize_all(crashed)
    assert_same_tables(Lake(steady.lake), lake, DERIVED_TABLES)


def test_a_rerun_after_an_erasures_rewrite_folds_onto_the_versions_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rewrite is the next batch's: a cut at the previous watermark must not read it. Here
    the batch rolls the memory back before it erases the subject, so a rerun folded onto the
    shredded versions restored an erased memory and refused the update that follows."""
    owner = Actor(kind=ActorKind.USER, id="owner")
    clock = iter(datetime(2026, 3, 1, 0, 0, second, tzinfo=UTC) for second in range(60))

    def event(cls: Any, payload: dict[str, Any], memory_id: str | None = None) -> Event:
        return new_event(
            cls, cube_id="cube-e", actor=owner, payload=payload, memory_id=memory_id, occurred_at=next(clock)
        )

    first = [
        event(CubeCreated, {"name": "notes", "subject_id": "subject-e"}),
        event(MemoryAdded, {"content": {"text": "likes tea"}}, "m1"),
    ]
    second = [
        event(MemoryUpdated, {"content": {"text": "likes coffee"}}, "m1"),
        event(CubeRolledBack, {"to_version": 2}),
        event(MemoryUpdated, {"priority": 0.9}, "m1"),
        event(SubjectErased, {"subject_id": "subject-e"}),
    ]
    assert pure_fold(first + second)["cube-e"].rejected == ()
    steady, crashed = _steady_and_crashed(tmp_path, first, second, monkeypatch)
    lake = Lake(crashed.lake)
    before = next(e["version"] for e in lake.commit_log("memory_versions") if e.get("memlake.watermark") == 1)
    assert lake.commit_log("memory_versions", limit=1)[0]["memlake.rewrites_for"] == "2"
    cut = find_cut(lake)
    assert cut.watermark == 1
    assert cut.versions["memory_versions"] == before  # not the rewrite after it
    assert watermark_versions(lake, "memory_versions")[1] == before
    _materialize_all(crashed)
    assert_same_tables(Lake(steady.lake), lake, DERIVED_TABLES)
    assert lake_memories(lake) == expected_memories(pure_fold(first + second))


def test_restore_rewinds_the_watermark_and_refuses_the_events_table(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "lake")
    lake = Lake(settings.lake)
    _land(lake, generate(100, cubes=2), first_offset=0)
    _materialize_all(settings)
    assert lake.watermark("memories") == 1
    report = restore(lake, "memories", version=0)
    assert report.details["watermark"] == -1
    assert lake.watermark("memories") == -1
    with pytest.raises(LakeError, match="not restored"):
        restore(lake, "events", version=0)
    _materialize_all(settings)
    assert lake.watermark("memories") == 1


def test_time_travel_history_and_diff(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "lake")
    lake = Lake(settings.lake)
    events = generate(300, cubes=3, seed=8, rollbacks=False, erasures=False)
    _land(lake, events, first_offset=0)
    _materialize_all(settings)
    results = pure_fold(events)
    cube_id, result = sorted(results.items())[0]
    state = result.state
    with pytest.raises(TimeTravelError):
        as_of(lake, cube_id, version=state.version + 1)
    with pytest.raises(TimeTravelError):
        as_of(lake, "no-such-cube", version=1)
    first = as_of(lake, cube_id, version=2)
    last = as_of(lake, cube_id, version=state.version)
    changes_between = diff(lake, cube_id, 2, state.version)
    assert {m.memory_id for m in changes_between.added} == set(last.visible()) - set(first.visible())
    memory_id = next(iter(state.history))
    assert [v.memory for v in memory_history(lake, memory_id, cube_id=cube_id)] == list(
        state.history[memory_id]
    )


def test_snapshot_reads_filter_string_columns_and_the_change_feed_follows(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "lake")
    lake = Lake(settings.lake)
    events = generate(200, cubes=4, seed=2)
    _land(lake, events[:100], first_offset=0)
    _materialize_all(settings)
    pinned = open_snapshot(lake)
    _land(lake, events[100:], first_offset=100)
    _materialize_all(settings)
    cube_id = events[0].cube_id
    rows = pinned.memories(cube_id=cube_id)
    assert set(rows.column("cube_id").to_pylist()) <= {cube_id}
    assert pinned.watermark == 1
    assert pinned.covered_offsets(TOPIC, [0]) == {0: 99}
    assert open_snapshot(lake).covers(TOPIC, 0, 199)
    feed = changes(lake, "memories", after_version=pinned.versions["memories"] or 0)
    assert feed.num_rows > 0
    assert set(feed.column("_change_type").to_pylist()) <= {"insert", "update_preimage", "update_postimage"}


def test_maintenance_keeps_contents_and_the_rollback_window(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "lake")
    lake = Lake(settings.lake)
    events = generate(300, cubes=3, seed=5)
    for i in range(0, 300, 50):
        _land(lake, events[i : i + 50], first_offset=i)
        _materialize_all(settings)
    before = lake_memories(lake)
    old_version = lake.version("memories") - 3
    old = lake.table("memories", version=old_version).to_pyarrow_table().num_rows
    compact(lake)
    checkpoint(lake)
    removed = vacuum(lake)
    assert all(r.details["files"] == 0 for r in removed)  # everything is inside the window
    assert lake_memories(lake) == before
    assert lake.table("memories", version=old_version).to_pyarrow_table().num_rows == old


def test_a_batch_whose_change_feed_was_vacuumed_refolds_the_whole_log(tmp_path: Path) -> None:
    settings, lake, events = _half_materialized(tmp_path / "lake", cubes=3, seed=8)
    pending = lake.version("events")
    assert lake.has_change_feed("events", pending)
    # Compacted, then vacuumed with no retention at all: the files of the pending commit are gone.
    compact(lake, ["events"])
    lake.table("events").vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    assert not lake.has_change_feed("events", pending)
    first = run_materialize(settings)
    assert first.plan is not None
    assert first.plan.refold
    _materialize_all(settings)
    assert lake_memories(lake) == expected_memories(pure_fold(events))


def test_sql_over_the_lake_now_and_as_of_an_events_version(tmp_path: Path) -> None:
    settings, lake, events = _half_materialized(tmp_path / "lake", cubes=3, seed=1)
    _materialize_all(settings)
    sql = "SELECT count(*) AS n FROM cube_versions"
    now = query(lake, sql).column("n")[0].as_py()
    then = query(lake, sql, as_of=1).column("n")[0].as_py()
    assert then < now
    assert now == sum(len(r.applied) for r in pure_fold(events).values())
    moment = datetime.now(UTC)
    assert query(lake, sql, as_of=moment).column("n")[0].as_py() == now
    result = query(lake, "SELECT cube_id, count(*) AS n FROM memories GROUP BY cube_id ORDER BY cube_id")
    write_result(result, tmp_path / "out.parquet")
    write_result(result, tmp_path / "out.csv")
    assert pq.read_table(tmp_path / "out.parquet").num_rows == result.num_rows
    assert (tmp_path / "out.csv").read_text().startswith('"cube_id","n"')
    assert pc.sum(result.column("n")).as_py() == len(lake_memories(lake))


def test_sql_says_what_is_wrong_with_a_query_it_cannot_answer(tmp_path: Path) -> None:
    _, lake, _ = _half_materialized(tmp_path / "lake", cubes=1, seed=2)
    head = lake.version("events")
    for text in ("", "  ", "-- a comment"):
        with pytest.raises(LakeError, match="the text holds no query"):
            query(lake, text)
    with pytest.raises(TimeTravelError, match=f"the events table has versions 0..{head}, not {head + 1}"):
        query(lake, "SELECT count(*) FROM memories", as_of=head + 1)
    with pytest.raises(LakeError, match="query failed: Catalog Error"):
        query(lake, "SELECT * FROM no_such_table")


def test_sql_filters_every_table_on_its_strings_whoever_wrote_its_files(tmp_path: Path) -> None:
    settings, lake, events = _half_materialized(tmp_path / "lake", cubes=3, seed=4)
    _materialize_all(settings)
    # The second batch MERGEd `usage`: delta-rs stored its files' strings as views.
    stored = {
        pq.read_schema(uri.removeprefix("file://")).field("cube_id").type
        for uri in lake.table("usage").file_uris()
    }
    assert pa.string_view() in stored
    cube_id = sorted(pure_fold(events))[0]
    counts = {}
    for name in TABLES:
        data = scan(lake.table(name), lake.spec(name))
        expected = pc.sum(pc.equal(data.column("cube_id"), cube_id)).as_py() or 0
        found = query(lake, f"SELECT count(*) AS n FROM {name} WHERE cube_id = '{cube_id}'")
        assert found.column("n")[0].as_py() == expected, name
        counts[name] = expected
    assert counts["usage"] > 0
    assert counts["memories"] > 0
    reads = query(
        lake,
        "SELECT u.memory_id, m.memory_type, u.access_count FROM usage u JOIN memories m USING (memory_id) "
        f"WHERE u.cube_id = '{cube_id}' AND m.memory_type <> '' ORDER BY u.memory_id",
    )
    assert reads.num_rows == counts["usage"]
    assert reads.schema.field("memory_id").type == pa.string()  # results come back plain


def test_verify_names_the_column_that_differs_in_a_merge_written_table(tmp_path: Path) -> None:
    settings, lake, events = _half_materialized(tmp_path / "live", cubes=3, seed=6)
    _materialize_all(settings)
    twin_settings, twin, _ = _half_materialized(tmp_path / "twin", cubes=3, seed=6)
    _materialize_all(twin_settings)
    assert compare_table(lake, lake.version("cubes"), twin, twin.version("cubes"), "cubes").equal
    cube_id = sorted(pure_fold(events))[0]
    twin.table("cubes").update(updates={"name": "'renamed'"}, predicate=f"cube_id = '{cube_id}'")
    difference = compare_table(lake, lake.version("cubes"), twin, twin.version("cubes"), "cubes")
    assert (difference.only_left, difference.only_right, difference.changed) == (0, 0, 1)
    assert difference.samples == (f"('{cube_id}',): name differ",)


class _CommitDuringRead(Lake):
    """A lake whose `memories` gets a new batch committed right after its first log read,
    as a follower would between two reads of a snapshot's cut."""

    committed = False

    def _read_head(self, name: str, read: Any, *, memo: Any = None) -> Any:
        value = super()._read_head(name, read, memo=memo)
        if name == "memories" and not self.committed:
            self.committed = True
            TableWriter(Lake(self.settings)).commit_derived("memories", _empty("memories"), watermark=2)
        return value


def _empty(name: str) -> pa.Table:
    return spec(name).schema.empty_table()


def test_a_cut_pairs_each_version_with_its_own_watermark(tmp_path: Path) -> None:
    settings = LakeSettings(root=str(tmp_path / "lake"))
    writer = TableWriter(Lake(settings))
    for name in STATE_TABLES:
        writer.commit_derived(name, _empty(name), watermark=1)
    at_one = Lake(settings).version("memories")
    cut = find_cut(_CommitDuringRead(settings))
    # memories moved on to watermark 2 while the cut was read: the cut is still at 1,
    # with the version of memories that reflects 1, not the newer one.
    assert cut.watermark == 1
    assert cut.versions["memories"] == at_one
    assert Lake(settings).head("memories") == Head(at_one + 1, 2, settled=True)


def test_a_cut_does_not_pair_a_rewrite_with_the_batch_commit_landing_after_it(tmp_path: Path) -> None:
    """The head of memories is an erasure's rewrite for batch 2 when the cut is read, and
    batch 2's own commit lands right after. The head's version and whether its commit moved
    the watermark come from one read: the cut stays before the rewrite."""
    from deltalake import CommitProperties, write_deltalake

    settings = LakeSettings(root=str(tmp_path / "lake"))
    lake = Lake(settings)
    writer = TableWriter(lake)
    for name in STATE_TABLES:
        writer.commit_derived(name, _empty(name), watermark=1)
    at_one = lake.version("memories")
    rewrite = CommitProperties(custom_metadata={REWRITES_KEY: "2"})
    write_deltalake(lake.uri("memories"), _empty("memories"), mode="append", commit_properties=rewrite)
    assert lake.head("memories") == Head(at_one + 1, 1, settled=False)
    cut = find_cut(_CommitDuringRead(settings))
    assert cut.watermark == 1
    assert cut.versions["memories"] == at_one  # not the rewrite, though the newest commit moved on
    assert Lake(settings).head("memories") == Head(at_one + 2, 2, settled=True)


def test_a_commit_another_writer_made_first_is_refused_as_a_concurrent_write(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer commits the same batch of `cube_versions` between this writer's check of
    the watermark and its commit: delta-rs refuses this one, and nothing of it lands."""
    from deltalake import CommitProperties, Transaction, write_deltalake

    writer = TableWriter(lake)
    writer.commit_derived("cube_versions", _empty("cube_versions"), watermark=1)
    real = writer_module._write_rows

    def another_writer_first(dt: Any, table: Any, rows: pa.Table, **kwargs: Any) -> None:
        same_batch = CommitProperties(app_transactions=[Transaction("materialize:cube_versions", 2)])
        write_deltalake(
            lake.uri("cube_versions"), _empty("cube_versions"), mode="append", commit_properties=same_batch
        )
        real(dt, table, rows, **kwargs)

    monkeypatch.setattr(writer_module, "_write_rows", another_writer_first)
    with pytest.raises(ConcurrentWriteError, match="another writer committed first") as refused:
        writer.commit_derived("cube_versions", _empty("cube_versions"), watermark=2)
    assert refused.value.table == "cube_versions"
    assert "memlake.watermark" not in lake.commit_log("cube_versions", limit=1)[0]  # the other's commit
    assert lake.watermark("cube_versions") == 2


class _BatchDuringRestore(Lake):
    """A lake whose `memories` gets the next batch committed right after a restore opens it."""

    def table(self, name: str, *, version: Any = None) -> Any:
        dt = super().table(name, version=version)
        if name == "memories" and version is None and not getattr(self, "overtaken", False):
            self.overtaken = True
            TableWriter(Lake(self.settings)).commit_derived("memories", _empty("memories"), watermark=3)
        return dt


def test_a_restore_another_commit_overtook_is_refused_as_a_concurrent_write(tmp_path: Path) -> None:
    settings = LakeSettings(root=str(tmp_path / "lake"))
    writer = TableWriter(Lake(settings))
    for watermark in (1, 2):
        writer.commit_derived("memories", _empty("memories"), watermark=watermark)
    with pytest.raises(ConcurrentWriteError, match="another writer committed after version 2"):
        restore(_BatchDuringRestore(settings), "memories", version=1)
    assert Lake(settings).head("memories") == Head(3, 3, settled=True)  # the batch, not the restore


def test_a_refused_commit_is_a_concurrent_write_when_the_table_moved_whatever_delta_rs_says(
    lake: Lake,
) -> None:
    """delta-rs' words for a refusal vary ("Failed to commit transaction: 0"); the version tells."""
    from deltalake import write_deltalake
    from deltalake.exceptions import CommitFailedError

    TableWriter(lake).commit_derived("memories", _empty("memories"), watermark=1)

    def overtaken(dt: Any) -> None:
        other = lake.table("memories")  # another writer's commit lands first
        write_deltalake(other, _empty("memories"), mode="append")
        raise CommitFailedError("Failed to commit transaction: 0")

    with pytest.raises(ConcurrentWriteError, match=r"committed after version 1 \(now at 2\)"):
        lake.write_to("memories", overtaken)

    def refused(dt: Any) -> None:
        raise CommitFailedError("Failed to commit transaction: 0")

    with pytest.raises(LakeError) as failed:  # nothing moved: not worth planning again
        lake.write_to("memories", refused)
    assert not isinstance(failed.value, ConcurrentWriteError)

    def refused_after_its_own_commit(dt: Any) -> None:
        write_deltalake(dt, _empty("memories"), mode="append")  # as an erasure's rewrite: moves `dt`
        raise CommitFailedError("Failed to commit transaction: 0")

    with pytest.raises(LakeError) as failed:  # only this write's own commit moved the table
        lake.write_to("memories", refused_after_its_own_commit)
    assert not isinstance(failed.value, ConcurrentWriteError)


def test_commits_leave_expired_log_files_to_maintenance(tmp_path: Path) -> None:
    """Dropping expired log files lists the whole log: commits leave it to `checkpoint`."""
    settings = LakeSettings(root=str(tmp_path / "lake"), checkpoint_interval=5)
    lake = Lake(settings)
    writer = TableWriter(lake)
    writer.commit_derived("cube_versions", _empty("cube_versions"), watermark=0)
    # Every log file is expired as soon as it is written, from here on.
    expire_at_once = {"delta.logRetentionDuration": "interval 0 seconds"}
    lake.table("cube_versions").alter.set_table_properties(expire_at_once)
    for watermark in range(1, 12):  # past two checkpoints
        writer.commit_derived("cube_versions", _empty("cube_versions"), watermark=watermark)
    log = Path(lake.uri("cube_versions")) / "_delta_log"
    assert (log / f"{0:020d}.json").exists()
    assert list(log.glob("*.checkpoint.parquet"))
    checkpoint(lake, ["cube_versions"])
    assert not (log / f"{0:020d}.json").exists()
    assert lake.watermark("cube_versions") == 11


def _version_row(cube_id: str, memory_id: str, version: int, text: str | None) -> dict[str, Any]:
    return {"bucket": 0, "cube_id": cube_id, "memory_id": memory_id, "version": version, "text": text}


def test_replacing_rows_rewrites_only_those_memories_in_a_commit_without_a_watermark(lake: Lake) -> None:
    writer = TableWriter(lake)
    schema = spec("memory_versions").schema
    rows = [
        _version_row("c1", "it's", 1, "secret"),
        _version_row("c1", "it's", 2, "secret too"),
        _version_row("c1", "kept", 1, "kept"),
        _version_row("c2", "it's", 1, "another cube's"),
    ]
    writer.commit_derived("memory_versions", pa.Table.from_pylist(rows, schema=schema), watermark=1)
    erased = [_version_row("c1", "it's", 1, None), _version_row("c1", "it's", 2, None)]
    new = [_version_row("c1", "it's", 3, None)]
    writer.commit_derived(
        "memory_versions",
        pa.Table.from_pylist(new, schema=schema),
        watermark=2,
        replacing=pa.Table.from_pylist(erased, schema=schema),
    )
    found = scan(lake.table("memory_versions"), spec("memory_versions")).to_pylist()
    assert sorted((r["cube_id"], r["memory_id"], r["version"], r["text"]) for r in found) == [
        ("c1", "it's", 1, None),  # a quote in an id is escaped, and the rows replaced
        ("c1", "it's", 2, None),
        ("c1", "it's", 3, None),
        ("c1", "kept", 1, "kept"),
        ("c2", "it's", 1, "another cube's"),  # the same memory id in another cube is left
    ]
    rewrite, append = lake.commit_log("memory_versions", limit=2)[::-1]
    assert rewrite["operation"] == "WRITE"
    assert "memlake.watermark" not in rewrite
    assert append["memlake.watermark"] == 2
    # The rewrite is part of the batch at watermark 2: watermark 1 is the version before it.
    marks = watermark_versions(lake, "memory_versions")
    assert marks == {-1: 0, 1: rewrite["version"] - 1, 2: append["version"]}


@pytest.mark.parametrize(
    ("replacing", "error"),
    [
        (pa.table({"cube_id": ["c1"]}), "lack the columns"),
        (spec("memory_versions").schema.empty_table(), "no rows"),
    ],
)
def test_replacing_needs_rows_with_cube_memory_and_partition(
    lake: Lake, replacing: pa.Table, error: str
) -> None:
    writer = TableWriter(lake)
    with pytest.raises(ValueError, match=error):
        writer.commit_derived("memory_versions", _empty("memory_versions"), watermark=1, replacing=replacing)
    assert not Path(lake.root, "memory_versions").exists()  # refused before any I/O
