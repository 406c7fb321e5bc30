"""The lake: Delta tables derived from the event log, their exactly-once writers and readers.

Tables (`lake.schemas`): `events` (every valid event with its Kafka position),
`memories` (current state), `memory_versions` (every version: history and
lineage), `cubes`, `cube_versions`, `usage` (reads per memory per day) and
`rejected` (valid events that could not apply, with the reason).

Readers: `open_snapshot` (a consistent cut for serving, with `changes` for the
change data feed), `as_of` / `current` (a cube at a version or a time),
`memory_history`, `lineage` and `diff`. Writers: `TableWriter` (each commit
carries its Delta transaction id). Maintenance and SQL live in
`lake.maintenance` and `lake.sql`.
"""

from lake.history import CubeDiff, MemoryChange, MemoryVersion, diff, lineage, memory_history
from lake.rows import cube_from_json, memory_from_json
from lake.schemas import DERIVED_TABLES, STATE_TABLES, TABLES, TableSpec, bucket_of, spec
from lake.snapshot import Cut, Snapshot, changes, find_cut, open_snapshot
from lake.tables import Lake, land_app_id, materialize_app_id
from lake.time_travel import CubeView, as_of, current, version_at
from lake.writer import CommitResult, TableWriter

__all__ = [
    "Lake",
    "TableSpec",
    "TABLES",
    "DERIVED_TABLES",
    "STATE_TABLES",
    "spec",
    "bucket_of",
    "land_app_id",
    "materialize_app_id",
    "TableWriter",
    "CommitResult",
    "Cut",
    "Snapshot",
    "find_cut",
    "open_snapshot",
    "changes",
    "CubeView",
    "as_of",
    "current",
    "version_at",
    "MemoryVersion",
    "memory_history",
    "lineage",
    "CubeDiff",
    "MemoryChange",
    "diff",
    "memory_from_json",
    "cube_from_json",
]
