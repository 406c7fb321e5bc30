"""Consistent snapshots: several derived tables read at one events-table version.

Every derived table is written by its own commit, so after a crash (or a
`restore` of one table) the tables may reflect different versions of the
events table. A `Cut` picks, for each table, its latest Delta version whose
watermark is the same events version `w`: the newest such `w` no table is
behind of. Serving pins a `Snapshot` (a cut of `memories` and `cubes`),
answers with its `watermark` as the snapshot version, moves forward through
the change data feed (`changes`), and knows which Kafka offsets it covers
(read-your-writes).
"""

from __future__ import annotations

__all__ = ["Cut", "Snapshot", "find_cut", "open_snapshot", "changes", "watermark_versions"]

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from lake.scan import scan, sql_in, without_views
from lake.schemas import STATE_TABLES, bucket_of
from lake.tables import PART_KEY, REWRITES_KEY, Lake, delta_errors, watermark_set_by
from memlake.errors import LakeError

if TYPE_CHECKING:
    from deltalake import DeltaTable


@dataclass(frozen=True)
class Cut:
    """Tables at one events version. `versions[t] is None` means "empty" (watermark -1)."""

    watermark: int
    versions: Mapping[str, int | None]

    @property
    def empty(self) -> bool:
        return self.watermark < 0


def watermark_versions(lake: Lake, name: str) -> dict[int, int]:
    """For each watermark a table has reflected: its latest Delta version reflecting it.

    Commits without memlake's metadata (optimize, vacuum) keep the previous
    version's watermark; the table's creation is watermark -1. A part of a batch's
    upsert (`PART_KEY`) reflects no watermark whole, and stands for none. Nor does
    an erasure's rewrite for the next batch (`REWRITES_KEY`), or any commit after it
    until that batch's own: those versions hold part of it, and a batch folded onto
    them after a crash found past versions shredded before its own erasure had run.
    """
    out: dict[int, int] = {}
    current = -1
    rewritten = False
    for entry in reversed(lake.commit_log(name)):
        mark = watermark_set_by(entry)
        if mark is not None:
            current, rewritten = mark, False
        rewritten = rewritten or REWRITES_KEY in entry
        if PART_KEY not in entry and not rewritten:
            out[current] = int(entry["version"])
    return out


def find_cut(lake: Lake, tables: Iterable[str] = STATE_TABLES, *, at_most: int | None = None) -> Cut:
    """The newest consistent cut of `tables` at or below `at_most` (default: the lowest watermark)."""
    names = list(tables)
    heads = {name: lake.head(name) for name in names}
    marks = {name: head.watermark for name, head in heads.items()}
    low = min(marks.values()) if at_most is None else min(at_most, *marks.values())
    # A head that did not move its watermark (a rewrite for the next batch, maintenance)
    # may hold part of a batch: only the commit log says which of its versions to read.
    if all(mark == low for mark in marks.values()) and (low < 0 or all(h.settled for h in heads.values())):
        # Each version read with its watermark and its last commit: a commit landing
        # meanwhile cannot pair a newer version or commit with an older watermark.
        return Cut(low, {name: (heads[name].version if low >= 0 else None) for name in names})
    by_table = {name: watermark_versions(lake, name) for name in names}
    common = set.intersection(*(set(v) for v in by_table.values()))
    candidates = [w for w in common if w <= low]
    best = max(candidates, default=-1)
    if best < 0:
        return Cut(-1, dict.fromkeys(names))
    return Cut(best, {name: by_table[name][best] for name in names})


def changes(
    lake: Lake,
    name: str,
    *,
    after_version: int,
    to_version: int | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    """The change data feed of a table between two of its versions: `(after_version, to_version]`.

    Rows carry `_change_type` (insert, update_preimage, update_postimage, delete)
    and `_commit_version`.
    """
    dt = lake.table(name)
    end = int(dt.version()) if to_version is None else to_version
    if end <= after_version:
        return pa.table({})
    with delta_errors(name):
        reader = dt.load_cdf(starting_version=after_version + 1, ending_version=end, columns=columns)
        return without_views(pa.RecordBatchReader.from_stream(reader).read_all())


@dataclass(frozen=True)
class Snapshot:
    """Derived tables pinned at one events-table version (`watermark`, the snapshot version)."""

    lake: Lake
    watermark: int
    versions: Mapping[str, int | None]
    _tables: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def table(self, name: str) -> DeltaTable | None:
        version = self.versions[name]
        if version is None:
            return None
        if name not in self._tables:
            self._tables[name] = self.lake.table(name, version=version)
        return self._tables[name]  # type: ignore[no-any-return]

    def read(
        self,
        name: str,
        *,
        columns: list[str] | None = None,
        filter: ds.Expression | None = None,
        prune: str | None = None,
    ) -> pa.Table:
        """Rows of one table of the snapshot: `filter` selects rows exactly; `prune`, a SQL
        predicate on partition columns and file statistics, skips whole files first."""
        table = self.lake.spec(name)
        dt = self.table(name)
        if dt is None:
            return (
                table.schema.empty_table() if columns is None else table.schema.empty_table().select(columns)
            )
        with delta_errors(name):
            return scan(dt, table, columns=columns, filter=filter, prune=prune)

    def memories(self, *, cube_id: str | None = None, live_only: bool = False) -> pa.Table:
        condition: ds.Expression | None = None
        if cube_id is not None:
            condition = pc.field("cube_id") == cube_id
        if live_only:
            live = pc.field("status") == "active"
            condition = live if condition is None else condition & live
        prune = None
        if cube_id is not None:
            bucket = bucket_of(cube_id, self.lake.settings.buckets)
            prune = f"bucket = {bucket} AND {sql_in('cube_id', [cube_id])}"
        return self.read("memories", filter=condition, prune=prune)

    def cubes(self) -> pa.Table:
        return self.read("cubes")

    def covered_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """The last Kafka offset per partition this snapshot reflects (read-your-writes)."""
        if self.watermark < 0:
            return {}
        events = self.lake.table("events", version=self.watermark)
        return self.lake.land_offsets(topic, partitions, dt=events)

    def covers(self, topic: str, partition: int, offset: int) -> bool:
        return self.covered_offsets(topic, [partition]).get(partition, -1) >= offset


def open_snapshot(
    lake: Lake, *, tables: Iterable[str] = ("memories", "cubes"), at_most: int | None = None
) -> Snapshot:
    """The newest consistent snapshot of `tables` (or the newest at or below events version `at_most`)."""
    names = list(tables)
    cut = find_cut(lake, names, at_most=at_most)
    if at_most is not None and cut.watermark > at_most:  # pragma: no cover - find_cut guarantees it
        raise LakeError(names[0], f"no snapshot at or below events version {at_most}")
    return Snapshot(lake, cut.watermark, dict(cut.versions))
