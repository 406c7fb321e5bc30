"""Prior states read from the lake: which cubes are read whole, within the caller's budget, and
what a rollback reads of the others."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks._lake_workload import generate
from lake.schemas import STATE_TABLES
from lake.snapshot import find_cut
from lake.state import StateRequest, load_states, references
from lake.tables import Lake
from memlake.events import Event, serialize_event
from memlake.settings import LakeSettings, Settings
from pipelines.folding import LoggedEvent, fold_cube
from pipelines.materialize import run_materialize
from tests.pipelines.helpers import land_events

pytestmark = pytest.mark.integration


def _materialized(root: Path, events: list[Event] | None = None) -> Lake:
    settings = Settings(lake=LakeSettings(root=str(root)))
    lake = Lake(settings.lake)
    lake.ensure_all()
    if events is None:
        events = generate(120, cubes=3, seed=9, rollbacks=False, erasures=False)
    land_events(lake, events, topic="t")
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
    # An erasure needs the whole cube, budget or not.
    forced = load_states(lake, cut, [StateRequest(largest, full=True)], whole_up_to=10_000, whole_budget=0)
    assert forced[largest].complete
    assert forced[largest].state == unbounded[largest].state


def test_a_rollback_folds_onto_what_it_reads_as_onto_the_whole_cube(tmp_path: Path) -> None:
    """A cube rolled back reads only the memories changed after its lowest target (and those its
    events name), each with its version at each target: the fold gives the same rows and state."""
    events = generate(1_400, cubes=12, seed=21, erasures=False)
    lake = _materialized(tmp_path / "lake", events[:700])
    cut = find_cut(lake, STATE_TABLES)
    logged: dict[str, list[LoggedEvent]] = defaultdict(list)
    at = datetime(2026, 2, 1, tzinfo=UTC)
    for offset, event in enumerate(events[700:], start=700):
        logged[event.cube_id].append(
            LoggedEvent(event, serialize_event(event).decode(), cut.watermark + 1, "t", 0, offset, at)
        )
    requests = [references(cube_id, [e.event for e in batch]) for cube_id, batch in logged.items()]
    assert sum(bool(r.rollback_targets) for r in requests) >= 8
    read = load_states(lake, cut, requests)
    whole = load_states(lake, cut, requests, whole_up_to=100_000)

    targets = {r.cube_id: r.rollback_targets for r in requests}
    held: dict[str, tuple[int, int]] = {}
    for cube_id, batch in logged.items():
        part, everything = read[cube_id], whole[cube_id]
        assert not part.complete
        assert everything.complete
        if targets[cube_id]:
            held[cube_id] = tuple(sum(map(len, s.state.history.values())) for s in (part, everything))
            # What is left out is the same at every target as now: no version made after one.
            for memory_id, versions in everything.state.history.items():
                if memory_id not in part.state.memories:
                    assert versions[-1].cube_version <= min(targets[cube_id])
        ours, theirs = (fold_cube(s, batch, buckets=lake.settings.buckets) for s in (part, everything))
        assert ours.applied == theirs.applied > 0
        for name in ("memories", "memory_versions", "cubes", "cube_versions", "usage", "rejected"):
            assert ours.table(name) == theirs.table(name), (cube_id, name)
        assert ours.state is not None
        assert theirs.state is not None
        assert ours.state.cube == theirs.state.cube
        assert all(theirs.state.memories[m] == memory for m, memory in ours.state.memories.items())
    assert sum(part for part, _ in held.values()) < sum(whole for _, whole in held.values()) / 2, held
