"""An `s3://` lake works the same way as a local one, against a real S3 API (infra/object_store).

The same log is materialized into a local folder and into a bucket; every table,
the readers, SQL, maintenance and `rebuild --verify` must agree.
"""

from __future__ import annotations

import pytest

from benchmarks._lake_workload import generate
from infra.object_store import LocalObjectStore
from lake.history import diff, memory_history
from lake.maintenance import checkpoint, compact, vacuum
from lake.schemas import TABLES
from lake.sql import query
from lake.tables import Lake
from lake.time_travel import as_of
from memlake.settings import Settings
from pipelines.follow import run_jobs
from pipelines.rebuild import run_rebuild
from tests.pipelines.helpers import assert_same_tables, expected_memories, lake_memories, produce, pure_fold

pytestmark = pytest.mark.integration


def _in_bucket(settings: Settings, store: LocalObjectStore) -> Settings:
    lake = settings.lake.model_copy(
        update={"root": f"s3://{store.bucket()}/lake", "storage_options": store.storage_options()}
    )
    return settings.model_copy(update={"lake": lake})


def test_an_s3_lake_holds_and_reads_what_a_local_one_does(
    object_store: LocalObjectStore, settings: Settings
) -> None:
    local = settings.model_copy(
        update={"pipelines": settings.pipelines.model_copy(update={"batch_max_events": 150})}
    )
    remote = _in_bucket(local, object_store)
    events = generate(400, cubes=3, seed=21)
    produce(local.kafka, events)
    run_jobs(local)
    run_jobs(remote)
    here, there = Lake(local.lake), Lake(remote.lake)
    assert not there.is_local
    assert there.version("memories") >= 2  # several batches, each a commit
    assert lake_memories(there) == expected_memories(pure_fold(events))
    assert_same_tables(here, there)

    results = pure_fold(events)
    cube_id, result = sorted(results.items())[0]
    latest = result.state.version
    assert as_of(there, cube_id, version=2).visible() == as_of(here, cube_id, version=2).visible()
    assert diff(there, cube_id, 2, latest) == diff(here, cube_id, 2, latest)
    memory_id = next(iter(result.state.history))
    versions = memory_history(there, memory_id, cube_id=cube_id)
    assert versions == memory_history(here, memory_id, cube_id=cube_id)
    assert [v.memory for v in versions] == list(result.state.history[memory_id])
    sql = "SELECT cube_id, count(*) AS n FROM memories GROUP BY cube_id ORDER BY cube_id"
    assert query(there, sql).to_pylist() == query(here, sql).to_pylist()
    earlier = there.version("events") - 1  # `--as-of` an events version
    counted = "SELECT count(*) AS n FROM memory_versions"
    assert query(there, counted, as_of=earlier) == query(here, counted, as_of=earlier)
    assert query(there, counted, as_of=earlier) != query(there, counted)

    # Maintenance on the bucket keeps every table's contents and the versions behind them.
    compact(there)
    checkpoint(there)
    assert all(report.details["files"] == 0 for report in vacuum(there))
    assert_same_tables(here, there)
    assert as_of(there, cube_id, version=2).visible() == as_of(here, cube_id, version=2).visible()

    rebuilt = run_rebuild(remote, verify=True)
    assert rebuilt.root.startswith(f"{remote.lake.root}/_rebuild/")
    # Deleted from the bucket once compared, as from a local folder.
    assert not rebuilt.kept
    place = Lake(remote.lake.model_copy(update={"root": rebuilt.root}))
    assert not any(place.exists(name) for name in TABLES)
    assert_same_tables(here, there)  # and nothing of the live lake went with it
    assert len(rebuilt.differences) == len(TABLES)
    assert rebuilt.equal, rebuilt.differences
