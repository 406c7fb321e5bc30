"""Comparing a table across two lakes (what `rebuild --verify` prints), on real Delta tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks._lake_workload import generate
from lake.compare import compare_table
from lake.rows import event_row, to_table
from lake.schemas import EVENTS
from lake.tables import Lake
from lake.writer import TableWriter
from memlake.events import Event, serialize_event
from memlake.settings import LakeSettings

pytestmark = pytest.mark.integration
TOPIC = "compare-test"


def _lake(root: Path, events: list[tuple[int, Event, bytes]]) -> Lake:
    """A lake whose events table holds these (offset, event, raw JSON) in one commit."""
    lake = Lake(LakeSettings(root=str(root)))
    lake.ensure_all()
    rows = [
        event_row(e, topic=TOPIC, partition=0, offset=o, timestamp_ms=1_767_225_600_000 + o, raw=raw)
        for o, e, raw in events
    ]
    TableWriter(lake).commit_events(
        to_table(EVENTS, rows), topic=TOPIC, offsets={0: max(o for o, _, _ in events)}
    )
    return lake


def test_equal_tables_compare_equal_and_each_kind_of_difference_is_counted(tmp_path: Path) -> None:
    events = generate(40, cubes=2, seed=5, rollbacks=False, erasures=False)
    logged = [(i, e, serialize_event(e)) for i, e in enumerate(events)]
    live = _lake(tmp_path / "live", logged)
    twin = _lake(tmp_path / "twin", logged)
    same = compare_table(live, live.version("events"), twin, twin.version("events"), "events")
    assert same.equal
    assert same.rows_left == same.rows_right == 40

    # The last event of its cube before offset 39: the cube's chain hashes after it stay the same.
    k = max(i for i in range(39) if all(e.cube_id != events[i].cube_id for e in events[i + 1 : 39]))
    altered = events[k].model_copy(update={"memory_id": "m-altered"})
    rebuilt = [
        *logged[:k],
        (k, altered, serialize_event(altered)),
        *logged[k + 1 : 39],
        (99, events[39], b"{}"),
    ]
    other = _lake(tmp_path / "other", rebuilt)
    difference = compare_table(live, live.version("events"), other, other.version("events"), "events")
    assert not difference.equal
    assert (difference.rows_left, difference.rows_right) == (40, 40)
    # Offset 39 only in live, 99 only in the rebuilt lake, offset k in both with other values.
    assert (difference.only_left, difference.only_right, difference.changed) == (1, 1, 1)
    notes = "\n".join(difference.samples)
    assert f"only in live: ('{TOPIC}', 0, 39)" in notes
    assert f"only in rebuilt: ('{TOPIC}', 0, 99)" in notes
    changed = next(n for n in difference.samples if n.startswith(f"('{TOPIC}', 0, {k})"))
    assert "memory_id" in changed
    assert "event_json" in changed
    assert "cube_id" not in changed


def test_a_missing_version_compares_as_an_empty_table(tmp_path: Path) -> None:
    events = generate(10, cubes=1, seed=2, rollbacks=False, erasures=False)
    live = _lake(tmp_path / "live", [(i, e, serialize_event(e)) for i, e in enumerate(events)])
    difference = compare_table(live, live.version("events"), live, None, "events")
    assert (difference.rows_left, difference.rows_right, difference.only_left) == (10, 0, 10)
    assert not difference.equal
    assert compare_table(live, None, live, None, "memories").equal
