"""materialize: new versions of `events` -> memories, memory_versions, cubes, cube_versions, usage, rejected.

The graph: the batch's plan (made when the graph runs, or given) -> its
events-table version ranges, spread over workers -> a reading `ParDo`
(the change data feed of those versions, rows grouped per cube) -> key by the
cube's shard -> `GroupByKey` -> fold each cube's events in log order onto
its prior state, loaded once per shard from the lake at one consistent cut
-> rows keyed by table -> one commit per table, each carrying
`Transaction("materialize:<table>", events version)`. Every step after the
plan gets it as a side input, so one translated graph serves batch after
batch (`pipelines.prepared`).

Exactly once, crash or not: the prior state is read at a cut where every
state table reflects the same events version `w`, and the batch is `(w, end]`.
A table already at `end` is skipped; an append or counter table part-way
(a crash between two tables' commits, or a `restore`) takes only the rows of
events past its own watermark; upsert tables take final states. So the next
run repairs whatever a crash left, and nothing is applied twice (the fold
also drops events whose ids it has applied or refused before).
If the change data feed of `(w, end]` is gone (vacuumed), the whole log is
refolded from the events table and every derived table overwritten.
"""

from __future__ import annotations

__all__ = ["Materialize", "MaterializePlan", "MaterializeResult", "plan_materialize", "run_materialize"]

import zlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics.metric import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from lake.scan import scan, without_views
from lake.schemas import DERIVED_TABLES, EVENTS, STATE_TABLES
from lake.snapshot import Cut, find_cut
from lake.state import LoadedState, StateRequest, judged_events, load_states, references
from lake.tables import EVENTS_KEY, Lake, delta_errors
from lake.writer import CommitResult
from memlake.errors import InvalidEventError, LakeError
from memlake.events import parse_event
from memlake.settings import LakeSettings, Settings
from pipelines.derived import RowsKind, combined, commit_table, rows_table
from pipelines.folding import EV, CubeRows, LoggedEvent, fold_cube
from pipelines.job_process import JobDoFn
from pipelines.landed_cache import landed_events
from pipelines.options import Spread, metric, new_pipeline, pipeline_options, step_errors
from pipelines.state_cache import StateCache, keep, state_cache

_NS = "memlake.materialize"
_EVENTS_PER_SHARD = 10_000
_READ_COLUMNS = ["cube_id", "topic", "partition", "offset", "logged_at", "event_json"]
# One row of the events table on its way to the fold: (events version, topic, partition,
# offset, logged_at in µs, event JSON). Plain tuples keep Beam's coders fast.
Row = tuple[int, str, int, int, int, str]


@dataclass(frozen=True)
class MaterializePlan:
    cut: Cut  # the prior state: every state table at events version `cut.watermark`
    end: int  # the last events version of the batch (its watermark)
    chunks: tuple[tuple[int, int], ...]  # events versions to read, [first, last]
    refold: bool = False  # the feed is gone: read every event, overwrite every table
    events: int = 0  # events the batch holds, by the land commits' metadata
    shards: int = 1  # groups of cubes folded apart (each loads its prior state in one go)
    # Upserts MERGE one bucket at a time, a commit each (lake.writer): less memory, but the
    # table's head holds part of the batch until the last. Only for a rebuild's fresh lake.
    merge_per_bucket: bool = False

    @property
    def start(self) -> int:
        return self.cut.watermark + 1


@dataclass(frozen=True)
class MaterializeResult:
    plan: MaterializePlan | None
    events: int = 0
    applied: int = 0
    rejected: int = 0
    duplicates: int = 0
    commits: int = 0

    @property
    def watermark(self) -> int | None:
        return self.plan.end if self.plan else None


def _chunks(first: int, last: int, parts: int) -> tuple[tuple[int, int], ...]:
    count = last - first + 1
    size = max(1, -(-count // max(1, parts)))
    return tuple((a, min(last, a + size - 1)) for a in range(first, last + 1, size))


def plan_materialize(lake: Lake, *, max_events: int, shards: int = 4) -> MaterializePlan | None:
    """The next batch, or None when every derived table reflects the newest events version."""
    lake.ensure_all()
    latest = lake.version("events")
    marks = lake.watermarks(DERIVED_TABLES)
    if min(marks.values()) >= latest:
        return None
    cut = find_cut(lake, STATE_TABLES, at_most=min(marks.values()))
    first = cut.watermark + 1
    if not lake.has_change_feed("events", first):
        empty = Cut(-1, dict.fromkeys(STATE_TABLES))
        return MaterializePlan(empty, latest, ((0, latest),), refold=True, shards=shards)
    counts = {
        int(entry["version"]): int(entry.get(EVENTS_KEY, 0))
        for entry in lake.commit_log("events", limit=latest - cut.watermark)
    }
    end, total = first, 0
    for version in range(first, latest + 1):
        # At least one version with events, however large: a batch must make progress.
        if total and total + counts.get(version, 0) > max_events:
            break
        total += counts.get(version, 0)
        end = version
    # Small batches fold in one shard: each shard pays a fixed cost to load its state.
    parts = max(1, min(shards, total // _EVENTS_PER_SHARD + 1))
    return MaterializePlan(cut, end, _chunks(first, end, parts), events=total, shards=parts)


class PlanMaterialize(beam.DoFn):
    """The batch (the plan given, or the next one), or None when the tables are up to date."""

    def __init__(self, settings: Settings, plan: MaterializePlan | None) -> None:
        self._settings = settings
        self._plan = plan
        self._planned = Metrics.counter(_NS, "batches")
        self._end = Metrics.distribution(_NS, "watermark")

    def process(self, _: object) -> Iterator[MaterializePlan | None]:
        plan = self._plan
        if plan is None:
            p = self._settings.pipelines
            plan = plan_materialize(
                Lake(self._settings.lake), max_events=p.batch_max_events, shards=p.fold_shards
            )
        if plan is not None:
            self._planned.inc()
            self._end.update(plan.end)
        yield plan


class ReadEvents(JobDoFn):
    """A range of events versions -> (cube_id, [rows]) per cube, in the order they were read."""

    def __init__(self, lake: LakeSettings) -> None:
        self._lake = lake
        self._events = Metrics.counter(_NS, "events")

    def _read(self, plan: MaterializePlan, first: int, last: int) -> pa.Table:
        lake = Lake(self._lake)
        if plan.refold:
            dt = lake.table("events", version=plan.end)
            data = scan(dt, EVENTS, columns=_READ_COLUMNS)
            return data.append_column(EV, pa.array([plan.end] * data.num_rows, pa.int64()))
        dt = lake.table("events", version=last)
        with delta_errors("events"):
            # No column selection: delta-rs builds SQL from the names, and "partition"
            # and "offset" are keywords there.
            reader = dt.load_cdf(starting_version=first, ending_version=last)
            data = without_views(pa.RecordBatchReader.from_stream(reader).read_all())
        data = data.filter(pc.equal(data.column("_change_type"), "insert"))
        return data.append_column(EV, data.column("_commit_version").cast(pa.int64()))

    def process(self, span: tuple[int, int], plan: MaterializePlan) -> Iterator[tuple[str, list[Row]]]:
        data = self._read(plan, *span)
        self._events.inc(data.num_rows)
        by_cube: dict[str, list[Row]] = defaultdict(list)
        columns = [
            data.column(EV).to_pylist(),
            data.column("topic").cast(pa.string()).to_pylist(),
            data.column("partition").to_pylist(),
            data.column("offset").to_pylist(),
            data.column("logged_at").cast(pa.int64()).to_pylist(),
            data.column("event_json").cast(pa.string()).to_pylist(),
        ]
        for cube_id, *row in zip(data.column("cube_id").cast(pa.string()).to_pylist(), *columns, strict=True):
            by_cube[cube_id].append(tuple(row))
        yield from by_cube.items()


def _shard_of(cube_id: str, shards: int) -> int:
    return zlib.crc32(cube_id.encode()) % shards


def _shard(item: tuple[str, list[Row]], plan: MaterializePlan) -> tuple[int, tuple[str, list[Row]]]:
    cube_id, rows = item
    return _shard_of(cube_id, plan.shards), (cube_id, rows)


class FoldShard(JobDoFn):
    """A shard of cubes -> rows per table; prior states are loaded once for the whole shard.

    States this process folded in the previous batch are taken from its `StateCache`
    when the batch starts at their watermark (pipelines.state_cache): no lake reads
    for them but the lookup of which of the batch's event ids were judged before.
    """

    def __init__(self, lake: LakeSettings, cache_versions: int = 0) -> None:
        self._lake = lake
        self._cache_versions = cache_versions
        self._applied = Metrics.counter(_NS, "applied")
        self._rejected = Metrics.counter(_NS, "rejected")
        self._duplicates = Metrics.counter(_NS, "duplicates")
        self._kept = Metrics.counter(_NS, "states_kept")

    def _prior(
        self, lake: Lake, plan: MaterializePlan, requests: list[StateRequest], cache: StateCache | None
    ) -> dict[str, LoadedState]:
        if cache is None or plan.cut.empty:
            return load_states(lake, plan.cut, requests)
        free = cache.max_versions - cache.retain(plan.cut.watermark, plan.end)
        kept = {r.cube_id: cache.get(r.cube_id, plan.cut.watermark) for r in requests}
        hits = [r for r in requests if kept[r.cube_id] is not None]
        # One lookup of the batch's judged ids, for kept and read cubes alike.
        applied, refused = judged = judged_events(lake, plan.cut, requests)
        # A cube small enough to keep is read whole once; later batches take it from the cache.
        states = load_states(
            lake,
            plan.cut,
            [r for r in requests if kept[r.cube_id] is None],
            whole_up_to=self._cache_versions // 16,
            # Read whole only what the cache has room for, shared by the batch's shards:
            # a whole read past that is evicted at once, and held the batch's memory.
            whole_budget=max(0, free) // max(1, plan.shards),
            judged=judged,
        )
        for request in hits:
            found = kept[request.cube_id]
            assert found is not None
            states[request.cube_id] = found.loaded(applied[request.cube_id], refused[request.cube_id])
            self._kept.inc()
        return states

    def process(
        self, element: tuple[int, Any], plan: MaterializePlan
    ) -> Iterator[tuple[str, tuple[pa.Table, RowsKind]]]:
        shard, groups = element
        lake = Lake(self._lake)
        # A refold reads every event once: nothing to keep for a next batch.
        cache = (
            state_cache(self._lake.root, self._cache_versions)
            if self._cache_versions and not plan.refold
            else None
        )
        logged: dict[str, list[LoggedEvent]] = defaultdict(list)
        unreadable: list[dict[str, Any]] = []
        landed = landed_events()
        # A cube's rows may come in several parts (one per range of versions read); the
        # fold orders them by their place in the log.
        for cube_id, rows in groups:
            for row in rows:
                ev, topic, partition, offset, logged_us, raw = row
                try:
                    event = landed.take((topic, partition, offset), raw) or parse_event(raw)
                except InvalidEventError as e:
                    # Landed under an older reader; it stays in the log and is recorded.
                    unreadable.append(_unreadable(e, cube_id, row))
                    continue
                at = datetime.fromtimestamp(logged_us / 1_000_000, tz=UTC)
                logged[cube_id].append(LoggedEvent(event, raw, ev, topic, partition, offset, at))
        requests = [references(cube_id, [e.event for e in events]) for cube_id, events in logged.items()]
        states = self._prior(lake, plan, requests, cache)
        out = CubeRows()
        out.rejected.extend(unreadable)
        for cube_id in sorted(logged):
            prior = states[cube_id]
            rows = fold_cube(prior, logged[cube_id], buckets=lake.settings.buckets)
            if cache is not None:
                # Kept only once the batch's commits land: the next cut is at `plan.end` then.
                if prior.complete and rows.state is not None:
                    cache.put(cube_id, keep(plan.end, rows.state, prior, rows.memory_versions))
                else:
                    cache.forget(cube_id)
            for name in DERIVED_TABLES:
                out.table(name).extend(rows.table(name))
            out.updates_memories |= rows.updates_memories
            self._applied.inc(rows.applied)
            self._rejected.inc(len(rows.rejected))
            self._duplicates.inc(rows.duplicates)
        if cache is not None:
            # This shard's cubes without events in the batch: their kept states stay exact.
            idle = [c for c in cache.cube_ids() if c not in logged and _shard_of(c, plan.shards) == shard]
            cache.advance(idle, plan.cut.watermark, plan.end)
        kinds: dict[str, RowsKind] = {"memories": "auto" if out.updates_memories else "insert"}
        for name in DERIVED_TABLES:
            yield name, (rows_table(name, out.table(name)), kinds.get(name, "auto"))


def _unreadable(error: InvalidEventError, cube_id: str, row: Row) -> dict[str, Any]:
    ev, topic, partition, offset, _, raw = row
    return {
        "event_id": f"unreadable:{topic}:{partition}:{offset}",
        "cube_id": cube_id,
        "memory_id": None,
        "event_type": error.event_type,
        "error": type(error).__name__,
        "reason": error.reason,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "occurred_at": None,
        "event_json": raw,
        EV: ev,
    }


class CommitTables(JobDoFn):
    """(table, rows of every shard) -> one commit of that table at the batch's watermark.

    The tables of one bundle commit concurrently, at the bundle's end: each is its
    own Delta commit with its own watermark (a crash between them is repaired like
    any other), and delta-rs writes without holding the GIL, so a micro-batch's
    commits take about as long as its largest one.
    """

    def __init__(self, lake: LakeSettings) -> None:
        self._lake = lake
        self._commits = Metrics.counter(_NS, "commits")
        self._pending: list[tuple[str, list[pa.Table], RowsKind]] = []
        self._plan: MaterializePlan | None = None

    def start_bundle(self) -> None:
        self._pending, self._plan = [], None

    def process(
        self,
        element: tuple[str, tuple[list[Any], list[tuple[pa.Table, RowsKind]]]],
        plan: MaterializePlan | None,
    ) -> None:
        if plan is None:
            return
        name, (_, parts) = element
        self._plan = plan
        self._pending.append((name, [table for table, _ in parts], combined(kind for _, kind in parts)))

    def _commit(self, name: str, parts: list[pa.Table], kind: RowsKind) -> CommitResult:
        plan = self._plan
        assert plan is not None
        return commit_table(
            Lake(self._lake),
            name,
            parts,
            watermark=plan.end,
            overwrite=plan.refold,
            kind=kind,
            cut=plan.cut.watermark,
            merge_per_bucket=plan.merge_per_bucket,
        )

    def finish_bundle(self) -> Iterator[WindowedValue]:
        if not self._pending:
            return
        with ThreadPoolExecutor(max_workers=len(self._pending)) as pool:
            # Every commit is awaited before any failure is raised: none is left running.
            futures = [pool.submit(self._commit, *pending) for pending in self._pending]
            results = [future.result() for future in futures]
        self._pending = []
        for result in results:
            if not result.skipped:
                self._commits.inc()
            yield WindowedValue(result, MIN_TIMESTAMP, (GlobalWindow(),))


class Materialize(beam.PTransform):  # type: ignore[type-arg]
    """The materialize graph, from a one-element PCollection that starts it.

    With `plan=None` it plans when it runs, so it can follow `Land` in one graph
    (started by land's commit) and be run again for the next batch.
    """

    def __init__(self, settings: Settings, plan: MaterializePlan | None = None) -> None:
        super().__init__()
        self._settings = settings
        self._plan = plan

    def expand(self, start: Any) -> Any:
        lake = self._settings.lake
        plan = start | "Plan" >> beam.ParDo(PlanMaterialize(self._settings, self._plan))
        batch = beam.pvalue.AsSingleton(plan)
        rows = (
            plan
            | "Versions" >> beam.FlatMap(lambda p: p.chunks if p is not None else ())
            | "Spread" >> Spread()
            | "ReadEvents" >> beam.ParDo(ReadEvents(lake), plan=batch)
            # One shuffle: rows keyed by their cube's shard, so each cube's events meet in one fold.
            | "ToShards" >> beam.Map(_shard, plan=batch)
            | "ByShard" >> beam.GroupByKey()
            | "Fold" >> beam.ParDo(FoldShard(lake, self._settings.pipelines.state_cache_versions), plan=batch)
        )
        # Every table commits, even with no rows: its watermark must move with the batch.
        # Seeded from the plan, not by a `Create` (two more stages per batch under the DirectRunner).
        tables = plan | "Tables" >> beam.FlatMap(
            lambda p: [(name, None) for name in DERIVED_TABLES] if p else []
        )
        return (
            {"table": tables, "rows": rows}
            | "ByTable" >> beam.CoGroupByKey()
            | "Unpack" >> beam.Map(lambda kv: (kv[0], (kv[1]["table"], kv[1]["rows"])))
            | "Commit" >> beam.ParDo(CommitTables(lake), plan=batch)
        )


def run_materialize(
    settings: Settings, *, beam_args: Sequence[str] = (), merge_per_bucket: bool = False
) -> MaterializeResult:
    """Materialize one batch of new events versions (nothing when the tables are up to date).

    `merge_per_bucket`: see `MaterializePlan`; the rebuild's fresh lake uses it.
    """
    lake = Lake(settings.lake)
    plan = plan_materialize(
        lake, max_events=settings.pipelines.batch_max_events, shards=settings.pipelines.fold_shards
    )
    if plan is None:
        return MaterializeResult(None)
    plan = replace(plan, merge_per_bucket=merge_per_bucket)
    with step_errors(), new_pipeline(pipeline_options(settings.pipelines, beam_args)) as pipeline:
        _ = pipeline | "Start" >> beam.Create([None]) | "Materialize" >> Materialize(settings, plan)
    result = pipeline.result
    marks = lake.watermarks(DERIVED_TABLES)
    behind = {name: mark for name, mark in marks.items() if mark < plan.end}
    if behind:
        raise LakeError(next(iter(behind)), f"tables still behind events version {plan.end}: {behind}")
    return MaterializeResult(
        plan,
        events=metric(result, _NS, "events"),
        applied=metric(result, _NS, "applied"),
        rejected=metric(result, _NS, "rejected"),
        duplicates=metric(result, _NS, "duplicates"),
        commits=metric(result, _NS, "commits"),
    )
