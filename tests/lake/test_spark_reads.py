"""Spark, with Delta Lake's own connector, reads the lake as memlake does (infra/spark).

The tables must stay readable by any Delta reader, as they are. delta-rs writes
them; Spark, the reader the Delta protocol was written for, reads every table
now, two of them as of an earlier version, and the change data feed, after
maintenance left a checkpoint and compacted files, and must find exactly the
rows memlake's own reads find.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks._lake_workload import generate
from infra.spark import SparkRunner
from lake.maintenance import checkpoint, compact
from lake.scan import scan, without_views
from lake.schemas import TABLES
from lake.tables import Lake
from memlake.settings import Settings
from pipelines.follow import run_jobs
from tests.pipelines.helpers import produce

pytestmark = pytest.mark.integration

_READER = Path(__file__).with_name("spark_reads.py")
# Its type differs by reader (milliseconds in delta-rs, microseconds in Spark); the commit
# it stands for is in `_commit_version`.
_COMMIT_TIME = "_commit_timestamp"


def _sorted(data: pa.Table) -> pa.Table:
    return data.sort_by([(f.name, "ascending") for f in data.schema if not pa.types.is_list(f.type)])


def _spark_read(spark: SparkRunner, reads: list[dict[str, object]], out: Path) -> dict[str, pa.Table]:
    printed = spark.run(_READER, json.dumps(reads), str(out)).split()
    assert printed == [read["name"] for read in reads]
    return {str(read["name"]): pq.read_table(out / str(read["name"])) for read in reads}


def _same(ours: pa.Table, theirs: pa.Table, what: str) -> None:
    assert sorted(theirs.column_names) == sorted(ours.column_names), what
    theirs = theirs.select(ours.column_names).cast(ours.schema)
    assert theirs.num_rows == ours.num_rows, what
    assert _sorted(theirs).equals(_sorted(ours)), what


def test_spark_reads_every_table_now_as_of_a_version_and_its_change_feed(
    spark: SparkRunner, settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={"pipelines": settings.pipelines.model_copy(update={"batch_max_events": 150})}
    )
    events = generate(700, cubes=4, seed=33)
    produce(settings.kafka, events[:500])
    run_jobs(settings)
    lake = Lake(settings.lake)
    compact(lake)
    checkpoint(lake)
    produce(settings.kafka, events[500:])  # log entries after the checkpoint too
    run_jobs(settings)
    assert lake.version("memories") >= 4

    latest = lake.version("memories")
    reads: list[dict[str, object]] = [
        {"name": name, "path": lake.uri(name), "options": {}} for name in TABLES
    ]
    reads += [
        {"name": f"{name}@2", "path": lake.uri(name), "options": {"versionAsOf": "2"}}
        for name in ("memories", "memory_versions")
    ]
    changes = {"readChangeFeed": "true", "startingVersion": "1", "endingVersion": str(latest)}
    reads.append({"name": "memories@changes", "path": lake.uri("memories"), "options": changes})
    theirs = _spark_read(spark, reads, tmp_path / "spark")

    for name in TABLES:
        ours = scan(lake.table(name), lake.spec(name))
        assert ours.num_rows > 0, name
        _same(ours, theirs[name], name)
    for name in ("memories", "memory_versions"):
        earlier = scan(lake.table(name, version=2), lake.spec(name))
        _same(earlier, theirs[f"{name}@2"], f"{name} as of version 2")
        assert earlier.num_rows != theirs[name].num_rows  # an earlier state indeed

    feed = lake.table("memories").load_cdf(starting_version=1, ending_version=latest)
    ours = without_views(pa.RecordBatchReader.from_stream(feed).read_all()).drop_columns([_COMMIT_TIME])
    assert {"insert", "update_preimage", "update_postimage"} <= set(ours.column("_change_type").to_pylist())
    _same(ours, theirs["memories@changes"].drop_columns([_COMMIT_TIME]), "memories' change feed")
