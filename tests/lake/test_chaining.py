"""The events table's hash chain, written by land (real broker, real Delta)."""

from __future__ import annotations

import pytest

from benchmarks._lake_workload import generate
from lake import chaining
from lake.chaining import chain_heads
from lake.scan import scan
from lake.schemas import EVENTS
from lake.tables import Lake
from memlake.chain import chain
from memlake.settings import Settings
from pipelines.land import run_land
from tests.pipelines.helpers import produce

pytestmark = pytest.mark.integration


def _rows(lake: Lake) -> list[dict[str, object]]:
    data = scan(
        lake.table("events"), EVENTS, columns=["cube_id", "partition", "offset", "event_json", "chain_hash"]
    )
    return sorted(data.to_pylist(), key=lambda r: (r["partition"], r["offset"]))


def test_land_chains_each_cube_in_log_order_across_batches(settings: Settings) -> None:
    events = generate(300, cubes=5, seed=11)
    small = settings.model_copy(
        update={"pipelines": settings.pipelines.model_copy(update={"batch_max_events": 60})}
    )
    produce(settings.kafka, events[:150])
    while run_land(small).events:
        pass
    # A new process: the heads come from the table itself, not from memory.
    chaining._heads.clear()
    produce(settings.kafka, events[150:])
    while run_land(small).events:
        pass

    lake = Lake(settings.lake)
    rows = _rows(lake)
    assert len(rows) == 300
    by_cube: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_cube.setdefault(str(row["cube_id"]), []).append(row)
    assert len(by_cube) >= 5
    for cube_id, cube_rows in by_cube.items():
        expected = chain(cube_id, [str(r["event_json"]).encode() for r in cube_rows])
        assert [r["chain_hash"] for r in cube_rows] == expected
        assert chain_heads(lake.table("events"))[cube_id] == expected[-1]

    # A replayed batch lands nothing and leaves every link as it was.
    before = [r["chain_hash"] for r in rows]
    while run_land(small).events:
        pass
    assert [r["chain_hash"] for r in _rows(lake)] == before
