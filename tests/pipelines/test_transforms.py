"""The pure steps of the Beam graphs, run as pipelines (on the runner the jobs use) with assert_that."""

from __future__ import annotations

from datetime import UTC, datetime

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from benchmarks._lake_workload import generate, invalid_records
from lake.state import LoadedState
from memlake.events import serialize_event
from memlake.fold import CubeState
from memlake.settings import PipelineSettings
from pipelines.folding import LoggedEvent, fold_cube
from pipelines.land import RawRecord, Triage
from pipelines.options import new_pipeline, pipeline_options
from tests.pipelines.helpers import pure_fold

_AT = datetime(2026, 1, 1, tzinfo=UTC)


def _records(values: list[tuple[bytes | None, bytes]]) -> list[RawRecord]:
    # Read hands triage plain tuples, in `Record`'s field order.
    return [("t", 0, i, key, value, 1_767_225_600_000 + i) for i, (key, value) in enumerate(values)]


def test_triage_splits_valid_events_from_dead_letters() -> None:
    events = generate(40, cubes=3)
    good = [(e.cube_id.encode(), serialize_event(e)) for e in events]
    bad = invalid_records(5)
    records = _records([*good[:20], *bad, *good[20:]])
    with new_pipeline(pipeline_options(PipelineSettings())) as p:
        out = (
            p
            | beam.Create([records[:30], records[30:]])
            | beam.ParDo(Triage()).with_outputs(Triage.DEAD, main="events")
        )
        rows = out["events"] | "Ids" >> beam.FlatMap(lambda t: t.column("event_id").to_pylist())
        assert_that(rows, equal_to([str(e.event_id) for e in events]), label="valid events")
        offsets = out[Triage.DEAD] | "Offsets" >> beam.Map(lambda d: (d.source_offset, bool(d.reason)))
        assert_that(offsets, equal_to([(20 + i, True) for i in range(5)]), label="dead letters")


def test_keyed_fold_by_cube_matches_the_pure_fold() -> None:
    events = generate(300, cubes=5, seed=12)
    logged = [LoggedEvent(e, serialize_event(e).decode(), 1, "t", 0, i, _AT) for i, e in enumerate(events)]
    expected = sorted(
        (m.cube_id, m.memory_id, m.model_dump_json())
        for r in pure_fold(events).values()
        for m in r.state.memories.values()
    )

    def fold(item: tuple[str, list[LoggedEvent]]) -> list[tuple[str, str, str]]:
        rows = fold_cube(LoadedState(CubeState()), list(item[1]), buckets=4)
        return [(r["cube_id"], r["memory_id"], r["memory_json"]) for r in rows.memories]

    with new_pipeline(pipeline_options(PipelineSettings())) as p:
        memories = (
            p
            | beam.Create(list(reversed(logged)))  # arrival order must not matter: log order does
            | beam.Map(lambda e: (e.event.cube_id, e))
            | beam.GroupByKey()
            | beam.FlatMap(fold)
        )
        assert_that(memories, equal_to(expected))


@pytest.mark.parametrize("seed", [1, 2])
def test_fold_rows_are_deterministic_and_tagged_with_their_events_version(seed: int) -> None:
    events = generate(200, cubes=2, seed=seed)
    cube = events[0].cube_id
    mine = [
        LoggedEvent(e, serialize_event(e).decode(), 10 + i // 50, "t", 0, i, _AT)
        for i, e in enumerate(events)
        if e.cube_id == cube
    ]
    one = fold_cube(LoadedState(CubeState()), mine, buckets=4)
    two = fold_cube(LoadedState(CubeState()), list(reversed(mine)), buckets=4)
    assert one.cube_versions == two.cube_versions
    assert one.memory_versions == two.memory_versions
    assert [r["version"] for r in one.cube_versions] == list(range(1, len(one.cube_versions) + 1))
    assert {r["_ev"] for r in one.cube_versions} <= {10, 11, 12, 13}
    assert one.applied + len(one.rejected) + one.duplicates == len(mine)
