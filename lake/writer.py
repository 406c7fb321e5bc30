"""Exactly-once commits: every write carries its Delta transaction id and is skipped if already applied.

delta-rs does not skip a replayed batch by itself, so each writer reads the
table's `transaction_version(app_id)` first and writes only what lies past
it, in one commit that carries the new version:

- land: `app_id = "land:<topic>:<partition>"`, `version` = last offset landed;
- materialize: `app_id = "materialize:<table>"`, `version` = events-table version.

Each commit also records `memlake.watermark` (and for land the event count and
offsets) as commit metadata, so that a table's history says which events
version each of its versions reflects; readers use that to find a consistent
cut across tables. Two writers of one table stay exactly once: a writer reads
the watermark and picks its rows inside the write, from the table brought up
to date, and a commit of the same batch landing after that conflicts with its
own (the same transaction id), which delta-rs refuses.
"""

from __future__ import annotations

__all__ = ["BatchRows", "CommitResult", "TableWriter"]

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
import pyarrow.compute as pc

from lake.chaining import remember, with_chain
from lake.schemas import TableSpec
from lake.tables import (
    DEAD_LETTERS_KEY,
    EVENTS_KEY,
    OFFSETS_KEY,
    PART_KEY,
    REWRITES_KEY,
    WATERMARK_KEY,
    WRITER_KEY,
    Lake,
    land_app_id,
    materialize_app_id,
)

if TYPE_CHECKING:
    from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties


@dataclass(frozen=True, slots=True)
class BatchRows:
    """What one batch writes to one derived table (see `TableWriter.commit_derived`)."""

    data: pa.Table
    how: Literal["auto", "insert", "overwrite"] = "auto"
    replacing: pa.Table | None = None


@dataclass(frozen=True, slots=True)
class CommitResult:
    table: str
    rows: int
    version: int | None  # the table version written; None when skipped
    reason: str = ""

    @property
    def skipped(self) -> bool:
        return self.version is None


def _quoted(column: str) -> str:
    return f'"{column}"'


def _literal(value: object) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"no SQL literal for {value!r} ({type(value).__name__}): only text and integers")


def _key_predicate(table: TableSpec) -> str:
    return " AND ".join(f"t.{_quoted(k)} = s.{_quoted(k)}" for k in table.keys)


def _memories_predicate(table: TableSpec, rows: pa.Table) -> str:
    """The rows of `table` that belong to the memories of `rows` (by cube and memory id),
    within the partitions `rows` fall in: one IN list of memory ids per cube."""
    missing = [c for c in ("cube_id", "memory_id", *table.partition_by) if c not in rows.column_names]
    if missing:
        raise ValueError(f"rows replacing memories of {table.name} lack the columns {missing}")
    if rows.num_rows == 0:
        raise ValueError(f"no rows to replace memories of {table.name} with")
    partitions = [
        f"{_quoted(p)} IN ({', '.join(_literal(v) for v in sorted(set(rows.column(p).to_pylist())))})"
        for p in table.partition_by
    ]
    memories: dict[str, set[str]] = {}
    for cube_id, memory_id in zip(
        rows.column("cube_id").to_pylist(), rows.column("memory_id").to_pylist(), strict=True
    ):
        memories.setdefault(cube_id, set()).add(memory_id)
    per_cube = [
        f"({_quoted('cube_id')} = {_literal(cube_id)} AND "
        f"{_quoted('memory_id')} IN ({', '.join(_literal(m) for m in sorted(ids))}))"
        for cube_id, ids in sorted(memories.items())
    ]
    return " AND ".join([*partitions, f"({' OR '.join(per_cube)})"])


def _sorted(data: pa.Table, table: TableSpec) -> pa.Table:
    """Rows in key order: the same input always gives the same files' content."""
    if data.num_rows <= 1:
        return data
    return data.sort_by([(k, "ascending") for k in table.keys])


def _after_commit() -> PostCommitHookProperties:
    """What delta-rs does after each commit: a checkpoint every `delta.checkpointInterval`
    commits, but not the clean-up of expired log files, which lists the whole log directory
    (every commit of the log retention, 30 days by default) at every commit: 128 against
    54 ms an append at 2,600 commits here, and growing. `lake.maintenance.checkpoint` (and
    follow mode's maintenance) drops them instead."""
    from deltalake import PostCommitHookProperties

    return PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)


def _write(
    dt: DeltaTable, rows: pa.Table, mode: Literal["append", "overwrite"], properties: CommitProperties
) -> None:
    from deltalake import write_deltalake

    write_deltalake(
        dt, rows, mode=mode, commit_properties=properties, post_commithook_properties=_after_commit()
    )


def _replace(dt: DeltaTable, rows: pa.Table, where: str, properties: CommitProperties) -> None:
    """Replace the rows `where` matches with `rows` (which it must match too), in one commit."""
    from deltalake import write_deltalake

    write_deltalake(
        dt,
        rows,
        mode="overwrite",
        predicate=where,
        commit_properties=properties,
        post_commithook_properties=_after_commit(),
    )


def _write_rows(
    dt: DeltaTable,
    table: TableSpec,
    rows: pa.Table,
    *,
    how: Literal["auto", "insert", "overwrite"],
    properties: CommitProperties,
    parts: CommitProperties | None = None,
) -> None:
    """The commit of `rows` the way `how` and the table's mode say (see `commit_derived`);
    with `parts`, a MERGE into a table partitioned by bucket is one commit per bucket, all
    but the last carrying `parts`."""
    if how == "overwrite":
        _write(dt, rows, "overwrite", properties)
        return
    if rows.num_rows == 0 or how == "insert" or (table.mode == "append" and how == "auto"):
        # An empty commit still moves the watermark: the batch is done for this table.
        _write(dt, rows, "append", properties)
        return
    with _ONE_MERGE_AT_A_TIME:
        if parts is None or table.partition_by != ("bucket",):
            _merge(dt, table, rows, properties)
            return
        # A MERGE holds every target file its early filter keeps, which is every bucket once a
        # batch touches them all: one bucket at a time it holds one bucket's files (a 50k-row
        # upsert into 1.1M rows: +0.33 against +1.7 GiB, 2.4 against 2.1 s).
        buckets = sorted(set(rows.column("bucket").to_pylist()))
        for n, bucket in enumerate(buckets):
            last = n == len(buckets) - 1
            part = rows.filter(pc.equal(rows.column("bucket"), bucket))
            _merge(dt, table, part, properties if last else parts, where=f"t.bucket = {int(bucket)}")


# A MERGE holds the target's touched files in memory while it runs (DataFusion, outside the
# Python heap); a batch's commits run concurrently, and their merges' peaks added up.
_ONE_MERGE_AT_A_TIME = threading.Lock()


def _merge(
    dt: DeltaTable, table: TableSpec, rows: pa.Table, properties: CommitProperties, *, where: str = ""
) -> None:
    merger = dt.merge(
        rows,
        f"{_key_predicate(table)} AND {where}" if where else _key_predicate(table),
        source_alias="s",
        target_alias="t",
        commit_properties=properties,
        post_commithook_properties=_after_commit(),
    )
    if table.mode == "counter":
        counts = [c for c in table.schema.names if c not in table.keys]
        merger = merger.when_matched_update(
            {
                c: (
                    f"greatest(t.{_quoted(c)}, s.{_quoted(c)})"
                    if pa.types.is_timestamp(table.schema.field(c).type)
                    else f"t.{_quoted(c)} + s.{_quoted(c)}"
                )
                for c in counts
            }
        )
    else:
        merger = merger.when_matched_update_all()
    merger.when_not_matched_insert_all().execute()


class TableWriter:
    """Writes batches to the lake's tables, each exactly once."""

    def __init__(self, lake: Lake) -> None:
        self._lake = lake

    # -- land ---------------------------------------------------------------------

    def commit_events(
        self,
        data: pa.Table,
        *,
        topic: str,
        offsets: Mapping[int, int],
        dead_letters: int = 0,
        writer: str | None = None,
    ) -> CommitResult:
        """Append landed events in one commit carrying, per partition, the last offset read.

        `offsets` is the last offset each partition's range covered (records after the
        last valid event may have been dead letters: the range is consumed all the same).
        Rows at or before an offset already stored are dropped, so a replay changes nothing.
        The commit's metadata also says how many `dead_letters` the ranges held and, if
        given, the `writer` (the run) that made it.
        """
        from deltalake import CommitProperties, Transaction

        lake = self._lake
        table = lake.spec("events")

        def commit(dt: DeltaTable) -> CommitResult:
            stored = lake.land_offsets(topic, offsets, dt=dt)
            advancing = {p: last for p, last in offsets.items() if last > stored.get(p, -1)}
            if not advancing:
                return CommitResult("events", 0, None, "every offset already landed")
            rows = data
            if rows.num_rows:
                parts = rows.column("partition").to_pylist()
                offs = rows.column("offset").to_pylist()
                mask = [
                    p in advancing and o > stored.get(p, -1) and o <= advancing[p]
                    for p, o in zip(parts, offs, strict=True)
                ]
                rows = rows.filter(pa.array(mask))
            rows, heads = with_chain(dt, _sorted(rows.cast(table.schema), table))
            properties = CommitProperties(
                app_transactions=[
                    Transaction(land_app_id(topic, p), last) for p, last in sorted(advancing.items())
                ],
                custom_metadata={
                    EVENTS_KEY: str(rows.num_rows),
                    DEAD_LETTERS_KEY: str(dead_letters),
                    OFFSETS_KEY: json.dumps({str(p): last for p, last in sorted(advancing.items())}),
                    **({WRITER_KEY: writer} if writer is not None else {}),
                },
            )
            # delta-rs moves `dt` to the commit it wrote: its version is ours, even when another
            # writer commits right after (bringing it up to date again could report theirs).
            _write(dt, rows, "append", properties)
            remember(dt, heads)
            return CommitResult("events", rows.num_rows, int(dt.version()))

        # The table kept open for writes (lake.heads), brought up to date instead of opened;
        # write_to turns delta-rs errors into LakeError.
        return lake.write_to("events", commit)

    # -- materialize ----------------------------------------------------------------

    def commit_derived(
        self,
        name: str,
        data: pa.Table,
        *,
        watermark: int,
        how: Literal["auto", "insert", "overwrite"] = "auto",
        replacing: pa.Table | None = None,
        merge_per_bucket: bool = False,
    ) -> CommitResult:
        """Write one batch of a derived table, tagged with the events version it reflects.

        `auto` writes the table's own way (append, upsert or counter MERGE); `insert`
        appends to an upsert table rows whose keys the caller knows it lacks; `overwrite`
        replaces the whole table (a full refold). Skipped when the table already
        reflects `watermark` or later.

        `replacing` (rows of a table keyed by cube and memory: the past versions an erasure
        rewrote) replaces every row of those memories first, in a commit of its own that
        carries no watermark: the table still reflects the events version before. delta-rs
        finds the files holding them by the predicate's columns and rewrites only those.

        `merge_per_bucket` MERGEs a table partitioned by bucket one bucket at a time, a
        commit each; only the last moves the watermark, the others carry `PART_KEY`. Until
        the last, the table's head holds part of the batch: for a lake nobody reads or
        resumes meanwhile (a rebuild's).
        """
        if replacing is not None:
            _memories_predicate(self._lake.spec(name), replacing)  # a bad `replacing` fails before any I/O
        rows = BatchRows(data, how, replacing)
        return self.commit_batch(
            name,
            lambda _: rows,
            watermark=watermark,
            overwrite=how == "overwrite",
            merge_per_bucket=merge_per_bucket,
        )

    def commit_batch(
        self,
        name: str,
        rows_at: Callable[[int], BatchRows],
        *,
        watermark: int,
        overwrite: bool = False,
        merge_per_bucket: bool = False,
    ) -> CommitResult:
        """`commit_derived` of the rows `rows_at` gives for the watermark the table is at,
        read inside the write from the table brought up to date: a commit another writer
        made before it is accounted for, and one made after it conflicts (the same
        transaction id) and fails the write with `ConcurrentWriteError`."""
        from deltalake import CommitProperties, Transaction

        lake = self._lake
        table = lake.spec(name)

        def commit(dt: DeltaTable) -> CommitResult:
            current = lake.watermark(name, dt=dt)
            if not overwrite and current >= watermark:
                return CommitResult(name, 0, None, f"already at events version {current}")
            batch = rows_at(current)
            if batch.replacing is not None:
                where = _memories_predicate(table, batch.replacing)
                old = _sorted(batch.replacing.select(table.schema.names).cast(table.schema), table)
                _replace(dt, old, where, CommitProperties(custom_metadata={REWRITES_KEY: str(watermark)}))
                lake.committed(name, int(dt.version()), current, settled=False)
            rows = _sorted(batch.data.select(table.schema.names).cast(table.schema), table)
            properties = CommitProperties(
                app_transactions=[Transaction(materialize_app_id(name), watermark)],
                custom_metadata={WATERMARK_KEY: str(watermark)},
            )
            parts = CommitProperties(custom_metadata={PART_KEY: str(watermark)}) if merge_per_bucket else None
            # Moves `dt` to its (last) commit.
            _write_rows(dt, table, rows, how=batch.how, properties=properties, parts=parts)
            version = int(dt.version())
            lake.committed(name, version, watermark)
            return CommitResult(name, rows.num_rows, version)

        # The table kept open for writes (lake.heads), brought up to date instead of opened;
        # write_to turns delta-rs errors into LakeError.
        return lake.write_to(name, commit)
