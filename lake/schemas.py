"""The lake's tables: one explicit pyarrow schema each, their partitioning, keys and write mode.

Every column is deterministic (it comes from the log, never from the clock of
the job that wrote it), so that a table rebuilt from the log equals the live
one row for row. Nested values that readers rarely filter on are kept whole
as canonical JSON (`memory_json`, `cube_json`, `event_json`) next to the flat
columns SQL users want.
"""

from __future__ import annotations

__all__ = [
    "TableName",
    "WriteMode",
    "TableSpec",
    "TABLES",
    "DERIVED_TABLES",
    "STATE_TABLES",
    "EVENTS",
    "MEMORIES",
    "MEMORY_VERSIONS",
    "CUBES",
    "CUBE_VERSIONS",
    "USAGE",
    "REJECTED",
    "spec",
    "bucket_of",
]

import zlib
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from memlake.errors import LakeError

TableName = Literal["events", "memories", "memory_versions", "cubes", "cube_versions", "usage", "rejected"]
# append: rows are only ever added; upsert: one row per key, replaced by MERGE;
# counter: one row per key whose counts are added to by MERGE.
WriteMode = Literal["append", "upsert", "counter"]

_TS = pa.timestamp("us", tz="UTC")
_STRINGS = pa.list_(pa.string())


@dataclass(frozen=True)
class TableSpec:
    name: TableName
    schema: pa.Schema
    keys: tuple[str, ...]  # what identifies a row (for MERGE and for comparing tables)
    mode: WriteMode
    partition_by: tuple[str, ...] = ()
    description: str = ""

    @property
    def is_derived(self) -> bool:
        return self.name != "events"


EVENTS = TableSpec(
    "events",
    pa.schema(
        [
            ("day", pa.date32()),  # UTC day of the log timestamp: the partition
            ("topic", pa.string()),
            ("partition", pa.int32()),
            ("offset", pa.int64()),
            ("logged_at", _TS),  # the Kafka record timestamp
            ("event_id", pa.string()),
            ("type", pa.string()),
            ("schema_version", pa.int32()),
            ("cube_id", pa.string()),
            ("memory_id", pa.string()),
            ("occurred_at", _TS),
            ("actor", pa.string()),  # principal, kind:id
            ("source_product", pa.string()),
            ("source_ref", pa.string()),
            ("causation_id", pa.string()),
            ("correlation_id", pa.string()),
            ("event_json", pa.string()),  # the record's bytes as logged (upcast on read)
            # sha256 link of the cube's hash chain up to this event, in log order (lake.chaining)
            ("chain_hash", pa.string()),
        ]
    ),
    keys=("topic", "partition", "offset"),
    mode="append",
    partition_by=("day",),
    description="Every valid event of the log with where it sits in Kafka.",
)

_MEMORY_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("bucket", pa.int32()),  # hash of cube_id: partitions MERGE and per-cube reads
    ("cube_id", pa.string()),
    ("memory_id", pa.string()),
    ("version", pa.int64()),  # the memory's own version
    ("cube_version", pa.int64()),  # the cube version that last changed it
    ("kind", pa.string()),
    ("status", pa.string()),
    ("memory_type", pa.string()),
    ("tags", _STRINGS),
    ("text", pa.string()),  # clear text only; sealed content stays in memory_json
    ("sealed", pa.bool_()),
    ("subject_id", pa.string()),
    ("artifact_uri", pa.string()),
    ("artifact_format", pa.string()),
    ("visibility", pa.string()),
    ("sensitivity", pa.string()),
    ("priority", pa.float64()),
    ("pinned", pa.bool_()),
    ("expires_at", _TS),
    ("access_count", pa.int64()),
    ("last_accessed_at", _TS),
    ("created_at", _TS),
    ("updated_at", _TS),
    ("memory_json", pa.string()),  # the whole `Memory`, canonical JSON
]

MEMORIES = TableSpec(
    "memories",
    pa.schema(_MEMORY_COLUMNS),
    keys=("bucket", "cube_id", "memory_id"),
    mode="upsert",
    partition_by=("bucket",),
    description="The current state of every memory.",
)

MEMORY_VERSIONS = TableSpec(
    "memory_versions",
    pa.schema(
        [
            *_MEMORY_COLUMNS,
            ("event_id", pa.string()),  # the event that made this version
            ("event_type", pa.string()),
        ]
    ),
    keys=("bucket", "cube_id", "memory_id", "version"),
    mode="append",  # erasure rewrites past versions in place (MERGE), nothing else does
    partition_by=("bucket",),
    description="Every version of every memory: history and lineage.",
)

CUBES = TableSpec(
    "cubes",
    pa.schema(
        [
            ("cube_id", pa.string()),
            ("name", pa.string()),
            ("owner", pa.string()),
            ("writers", _STRINGS),
            ("readers", _STRINGS),
            ("subject_id", pa.string()),
            ("policy_json", pa.string()),
            ("version", pa.int64()),
            ("created_at", _TS),
            ("updated_at", _TS),
            ("cube_json", pa.string()),  # the whole `Cube`, canonical JSON
        ]
    ),
    keys=("cube_id",),
    mode="upsert",
    description="Cube metadata, ACL, policy and current version.",
)

CUBE_VERSIONS = TableSpec(
    "cube_versions",
    pa.schema(
        [
            ("bucket", pa.int32()),
            ("cube_id", pa.string()),
            ("version", pa.int64()),
            ("event_id", pa.string()),
            ("event_type", pa.string()),
            ("memory_id", pa.string()),
            ("actor", pa.string()),
            ("occurred_at", _TS),
            ("logged_at", _TS),
            ("topic", pa.string()),
            ("partition", pa.int32()),
            ("offset", pa.int64()),
            # Set only where the cube itself changed (ACL, policy, name, updated_at);
            # a version without it has the metadata of the last one that has it.
            ("cube_json", pa.string()),
        ]
    ),
    keys=("bucket", "cube_id", "version"),
    mode="append",
    partition_by=("bucket",),
    description="One row per cube version: which event made it, when, from where.",
)

USAGE = TableSpec(
    "usage",
    pa.schema(
        [
            ("day", pa.date32()),  # UTC day the read happened (occurred_at)
            ("cube_id", pa.string()),
            ("memory_id", pa.string()),
            ("access_count", pa.int64()),
            ("last_accessed_at", _TS),
        ]
    ),
    keys=("day", "cube_id", "memory_id"),
    mode="counter",
    partition_by=("day",),
    description="Reads per memory per day: the behavioural indicators consolidation uses.",
)

REJECTED = TableSpec(
    "rejected",
    pa.schema(
        [
            ("event_id", pa.string()),
            ("cube_id", pa.string()),
            ("memory_id", pa.string()),
            ("event_type", pa.string()),
            ("error", pa.string()),  # the RejectedEventError subclass
            ("reason", pa.string()),
            ("topic", pa.string()),
            ("partition", pa.int32()),
            ("offset", pa.int64()),
            ("occurred_at", _TS),
            ("event_json", pa.string()),
        ]
    ),
    keys=("event_id",),
    mode="append",
    description="Valid events that could not apply to their cube, with the reason.",
)

TABLES: dict[str, TableSpec] = {
    t.name: t for t in (EVENTS, MEMORIES, MEMORY_VERSIONS, CUBES, CUBE_VERSIONS, USAGE, REJECTED)
}
DERIVED_TABLES: tuple[TableName, ...] = (
    "memories",
    "memory_versions",
    "cubes",
    "cube_versions",
    "usage",
    "rejected",
)
# The tables the fold's prior state is read from; they must be read at one watermark.
STATE_TABLES: tuple[TableName, ...] = ("memories", "memory_versions", "cubes", "cube_versions", "rejected")


def spec(name: str) -> TableSpec:
    """The table of that name; a name the lake has no table of (a user's typo, most often)
    is a `LakeError` listing the tables, which the command line prints as one line."""
    try:
        return TABLES[name]
    except KeyError:
        raise LakeError(name, f"no such table (the lake's tables: {', '.join(TABLES)})") from None


def bucket_of(cube_id: str, buckets: int) -> int:
    """The partition bucket of a cube: stable across processes and machines (CRC-32)."""
    return zlib.crc32(cube_id.encode()) % buckets
