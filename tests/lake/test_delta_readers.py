"""Other Delta readers read the lake as memlake does (infra/delta_readers).

The tables must stay readable by any Delta reader, as they are. delta-rs writes
them; Spark with Delta's own connector (the reader the protocol was written
for) and Polars read every table now and two of them as of an earlier version,
Spark also the change data feed, after maintenance left a checkpoint and
compacted files; each must find exactly the rows memlake's own reads find.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks._lake_workload import generate
from infra.delta_readers import PolarsReader, ReaderProcess, SparkReader
from lake.maintenance import checkpoint, compact
from lake.scan import scan, without_views
from lake.schemas import TABLES
from lake.tables import Lake
from memlake.settings import Settings
from pipelines.follow import run_jobs
from tests.pipelines.helpers import produce

pytestmark = pytest.mark.integration

_HERE = Path(__file__).parent
_EARLIER = 2  # the version read back in time
_TRAVELLED = ("memories", "memory_versions")
# Its type differs by reader (milliseconds in delta-rs, microseconds in Spark); the commit
# it stands for is in `_commit_version`.
_COMMIT_TIME = "_commit_timestamp"


def _maintained_lake(settings: Settings) -> Lake:
    """A lake of several batches, compacted and checkpointed, with commits after the checkpoint."""
    settings = settings.model_copy(
        update={"pipelines": settings.pipelines.model_copy(update={"batch_max_events": 150})}
    )
    events = generate(700, cubes=4, seed=33)
    produce(settings.kafka, events[:500])
    run_jobs(settings)
    lake = Lake(settings.lake)
    compact(lake)
    checkpoint(lake)
    produce(settings.kafka, events[500:])
    run_jobs(settings)
    assert lake.version("memories") >= 4
    return lake


def _read(
    reader: ReaderProcess, script: str, reads: list[dict[str, object]], out: Path
) -> dict[str, pa.Table]:
    printed = reader.run(_HERE / script, json.dumps(reads), str(out)).split()
    assert printed == [read["name"] for read in reads]
    return {str(read["name"]): pq.read_table(out / str(read["name"])) for read in reads}


def _reads(lake: Lake, travel: dict[str, object]) -> list[dict[str, object]]:
    """Every table now, and those in `_TRAVELLED` as of `_EARLIER` with the reader's option."""
    now = [{"name": name, "path": lake.uri(name), "options": {}} for name in TABLES]
    back = [{"name": f"{name}@{_EARLIER}", "path": lake.uri(name), "options": travel} for name in _TRAVELLED]
    return [*now, *back]


def _sorted(data: pa.Table) -> pa.Table:
    return data.sort_by([(f.name, "ascending") for f in data.schema if not pa.types.is_list(f.type)])


def _same(ours: pa.Table, theirs: pa.Table, what: str) -> None:
    assert sorted(theirs.column_names) == sorted(ours.column_names), what
    theirs = theirs.select(ours.column_names).cast(ours.schema)
    assert theirs.num_rows == ours.num_rows, what
    assert _sorted(theirs).equals(_sorted(ours)), what


def _same_tables(lake: Lake, theirs: dict[str, pa.Table]) -> None:
    for name in TABLES:
        ours = scan(lake.table(name), lake.spec(name))
        assert ours.num_rows > 0, name
        _same(ours, theirs[name], name)
    for name in _TRAVELLED:
        earlier = scan(lake.table(name, version=_EARLIER), lake.spec(name))
        _same(earlier, theirs[f"{name}@{_EARLIER}"], f"{name} as of version {_EARLIER}")
        assert earlier.num_rows != theirs[name].num_rows  # an earlier state indeed


def test_spark_reads_every_table_now_as_of_a_version_and_its_change_feed(
    spark: SparkReader, settings: Settings, tmp_path: Path
) -> None:
    lake = _maintained_lake(settings)
    latest = lake.version("memories")
    reads = _reads(lake, {"versionAsOf": str(_EARLIER)})
    changes = {"readChangeFeed": "true", "startingVersion": "1", "endingVersion": str(latest)}
    reads.append({"name": "memories@changes", "path": lake.uri("memories"), "options": changes})
    theirs = _read(spark, "spark_reads.py", reads, tmp_path / "spark")
    _same_tables(lake, theirs)

    feed = lake.table("memories").load_cdf(starting_version=1, ending_version=latest)
    ours = without_views(pa.RecordBatchReader.from_stream(feed).read_all()).drop_columns([_COMMIT_TIME])
    assert {"insert", "update_preimage", "update_postimage"} <= set(ours.column("_change_type").to_pylist())
    _same(ours, theirs["memories@changes"].drop_columns([_COMMIT_TIME]), "memories' change feed")


def test_polars_reads_every_table_now_and_as_of_a_version(
    polars: PolarsReader, settings: Settings, tmp_path: Path
) -> None:
    lake = _maintained_lake(settings)
    reads = _reads(lake, {"version": _EARLIER})
    _same_tables(lake, _read(polars, "polars_reads.py", reads, tmp_path / "polars"))
