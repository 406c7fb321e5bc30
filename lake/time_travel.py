"""Time travel per cube: the cube and its memories as of a cube version or a point in time.

This reads the append-only history (`memory_versions`, `cube_versions`), not
old Delta versions, so it reaches back to a cube's first version whatever
vacuum removed. `as_of(version=N)` gives exactly what the kernel's
`memories_at(state, N)` gives. `as_of(timestamp=T)` is the cube version the
log had recorded by `T` (the Kafka timestamps of its events): what the lake
knew at that moment, not what events claimed about their own time.
For a whole table at an old Delta version, see `lake.sql` and
`memlake lake restore` (those do depend on the vacuum window).
"""

from __future__ import annotations

__all__ = ["CubeView", "as_of", "version_at", "current", "current_cube"]

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lake.rows import cube_from_json, memory_from_json
from lake.scan import sql_in
from lake.schemas import bucket_of
from lake.snapshot import Snapshot, open_snapshot
from lake.tables import Lake
from memlake.errors import TimeTravelError
from memlake.model import Cube, Memory, MemoryStatus

_HISTORY_TABLES = ("memory_versions", "cube_versions", "cubes")


@dataclass(frozen=True)
class CubeView:
    """A cube as it stood at one version. `memories` includes deleted ones (their status says so)."""

    cube_id: str
    version: int
    cube: Cube | None
    memories: dict[str, Memory]

    def live(self) -> list[Memory]:
        return [m for _, m in sorted(self.memories.items()) if m.status.is_live]

    def visible(self) -> dict[str, Memory]:
        """What a reader sees: every memory that is not deleted."""
        return {k: m for k, m in sorted(self.memories.items()) if m.status is not MemoryStatus.DELETED}


def _cube_filter(lake: Lake, cube_id: str) -> pc.Expression:
    return (pc.field("bucket") == bucket_of(cube_id, lake.settings.buckets)) & (
        pc.field("cube_id") == cube_id
    )


def _cube_prune(lake: Lake, cube_id: str) -> str:
    return f"bucket = {bucket_of(cube_id, lake.settings.buckets)} AND {sql_in('cube_id', [cube_id])}"


def _cube_field(snap: Snapshot, cube_id: str, column: str) -> Any:
    """One column of the cube's `cubes` row in the snapshot (None: no such cube)."""
    rows = snap.read(
        "cubes",
        columns=[column],
        filter=pc.field("cube_id") == cube_id,
        prune=sql_in("cube_id", [cube_id]),
    )
    return rows.column(column)[0].as_py() if rows.num_rows else None


def _current_version(snap: Snapshot, cube_id: str) -> int:
    return int(_cube_field(snap, cube_id, "version") or 0)


_TS = pa.timestamp("us", tz="UTC")


def version_at(lake: Lake, cube_id: str, timestamp: datetime, *, snapshot: Snapshot | None = None) -> int:
    """The cube's version as the log had it at `timestamp` (0: the cube did not exist yet)."""
    if timestamp.tzinfo is None:
        raise TimeTravelError("cube_versions", "the timestamp must carry a timezone", cube_id=cube_id)
    snap = snapshot or open_snapshot(lake, tables=_HISTORY_TABLES)
    rows = snap.read(
        "cube_versions",
        columns=["version"],
        filter=_cube_filter(lake, cube_id) & (pc.field("logged_at") <= pa.scalar(timestamp, _TS)),
        prune=_cube_prune(lake, cube_id),
    )
    if rows.num_rows == 0:
        return 0
    return int(pc.max(rows.column("version")).as_py())


def current_cube(lake: Lake, cube_id: str) -> Cube | None:
    """The cube (ACL, policy, version) in the lake's newest snapshot; None if the lake has
    not seen it. Reads its `cubes` row only, not its memories."""
    found = _cube_field(open_snapshot(lake, tables=("cubes",)), cube_id, "cube_json")
    return None if found is None else cube_from_json(found)


def current(lake: Lake, cube_id: str) -> CubeView:
    """The cube now (its newest consistent snapshot)."""
    snap = open_snapshot(lake, tables=_HISTORY_TABLES)
    return _view(lake, snap, cube_id, _current_version(snap, cube_id))


def as_of(
    lake: Lake, cube_id: str, *, version: int | None = None, timestamp: datetime | None = None
) -> CubeView:
    """The cube at a version (1..current) or at a time. Exactly one of the two."""
    if (version is None) == (timestamp is None):
        raise ValueError("give exactly one of version= or timestamp=")
    snap = open_snapshot(lake, tables=_HISTORY_TABLES)
    latest = _current_version(snap, cube_id)
    if timestamp is not None:
        version = version_at(lake, cube_id, timestamp, snapshot=snap)
        if version == 0:
            raise TimeTravelError(
                "cube_versions",
                f"cube {cube_id!r} did not exist at {timestamp.isoformat()}",
                cube_id=cube_id,
                requested=timestamp,
            )
    assert version is not None
    if not 1 <= version <= latest:
        raise TimeTravelError(
            "cube_versions",
            f"cube {cube_id!r} has versions 1..{latest}, not {version}"
            if latest
            else f"cube {cube_id!r} does not exist",
            cube_id=cube_id,
            requested=version,
        )
    return _view(lake, snap, cube_id, version)


def _view(lake: Lake, snap: Snapshot, cube_id: str, version: int) -> CubeView:
    if version == 0:
        return CubeView(cube_id, 0, None, {})
    where = _cube_filter(lake, cube_id)
    rows = snap.read(
        "memory_versions",
        columns=["memory_id", "version", "memory_json"],
        filter=where & (pc.field("cube_version") <= version),
        prune=_cube_prune(lake, cube_id),
    )
    newest: dict[str, tuple[int, str]] = {}
    for memory_id, memory_version, value in zip(
        *(rows.column(c).to_pylist() for c in ("memory_id", "version", "memory_json")), strict=True
    ):
        if memory_id not in newest or newest[memory_id][0] < memory_version:
            newest[memory_id] = (memory_version, value)
    memories = {mid: memory_from_json(value) for mid, (_, value) in sorted(newest.items())}
    rows = snap.read(
        "cube_versions",
        columns=["version", "cube_json"],
        filter=where & (pc.field("version") <= version) & pc.field("cube_json").is_valid(),
        prune=_cube_prune(lake, cube_id),
    )
    cube = None
    if rows.num_rows:
        versions = rows.column("version").to_pylist()
        index = versions.index(max(versions))
        cube = cube_from_json(rows.column("cube_json")[index].as_py())
        cube = cube.model_copy(update={"version": version})
    return CubeView(cube_id, version, cube, memories)
