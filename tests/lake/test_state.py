"""Prior states read from the lake: which cubes are read whole, within the caller's budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks._lake_workload import generate
from lake.rows import event_row, to_table
from lake.schemas import EVENTS, STATE_TABLES
from lake.snapshot import find_cut
from lake.state import StateRequest, load_states
from lake.tables import Lake
from lake.writer import TableWriter
from memlake.events import serialize_event
from memlake.settings import LakeSettings, Settings
from pipelines.materialize import run_materialize

pytestmark = pytest.mark.integration


def _materialized(root: Path) -> Lake:
    settings = Settings(lake=LakeSettings(root=str(root)))
    lake = Lake(settings.lake)
    lake.ensure_all()
    events = generate(120, cubes=3, seed=9, rollbacks=False, erasures=False)
    rows = [
        event_row(
            e, topic="t", partition=0, offset=i, timestamp_ms=1_767_225_600_000 + i, raw=serialize_event(e)
        )
        for i, e in enumerate(events)
    ]
    TableWriter(lake).commit_events(to_table(EVENTS, rows), topic="t", offsets={0: len(events) - 1})
    while run_materialize(settings).plan is not None:
        pass
    return lake


def test_small_cubes_are_read_whole_smallest_first_within_the_budget(tmp_path: Path) -> None:
    lake = _materialized(tmp_path / "lake")
    cut = find_cut(lake, STATE_TABLES)
    everything = load_states(lake, cut, [StateRequest(c) for c in ("cube-00000", "cube-00001", "cube-00002")])
    versions = {c: s.state.cube.version for c, s in everything.items() if s.state.cube is not None}
    assert len(versions) == 3
    assert len(set(versions.values())) == 3
    smallest, middle, largest = sorted(versions, key=versions.__getitem__)
    requests = [StateRequest(c) for c in versions]

    unbounded = load_states(lake, cut, requests, whole_up_to=10_000)
    assert all(s.complete for s in unbounded.values())
    # Whole, a cube holds about two versions per event: the budget fits the smallest only.
    budget = 2 * versions[smallest] + 1
    bounded = load_states(lake, cut, requests, whole_up_to=10_000, whole_budget=budget)
    assert {c for c, s in bounded.items() if s.complete} == {smallest}
    assert bounded[smallest].state == unbounded[smallest].state
    assert not bounded[middle].state.history  # read in part: only what its events name
    # A rollback or erasure needs the whole cube, budget or not.
    forced = load_states(lake, cut, [StateRequest(largest, full=True)], whole_up_to=10_000, whole_budget=0)
    assert forced[largest].complete
    assert forced[largest].state == unbounded[largest].state
