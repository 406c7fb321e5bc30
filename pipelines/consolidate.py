"""consolidate: the scheduled job that expires, archives, merges and picks hot memories.

It reads one consistent snapshot of the lake (`memories`, `cubes`, `usage`
at one events version) and decides, per cube, by the rules of
`pipelines.lifecycle` (expiry, retention, decay), `pipelines.dedupe` (exact
and near-duplicate merges, contradictions) and `pipelines.hot_memories`.
Every decision is an event sent through the producer by `system:consolidate`;
the job never writes a derived table of the log itself, materialize does.

The graph: a `Create` of the lake's cube buckets -> `ConsolidateBucket`
(reads the bucket's memories, embeds what is new, decides) -> all results to
one `CommitDecisions`, the only writer: it drops decisions already in the log
(their ids are deterministic, see `pipelines.decisions`), sends the rest,
then appends new vectors to the cache and replaces the hot-memory selection.
A second run on the same snapshot therefore sends nothing. `dry_run` decides
and reports but writes nothing.
"""

from __future__ import annotations

__all__ = [
    "Plan",
    "BucketResult",
    "ConsolidationReport",
    "Consolidate",
    "ConsolidateBucket",
    "CommitDecisions",
    "EmbedFactory",
    "plan_consolidation",
    "run_consolidate",
]

import json
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.transforms import combiners

from lake.schemas import bucket_of
from lake.snapshot import open_snapshot
from lake.tables import Lake
from memlake.settings import KafkaSettings, Settings
from pipelines.consolidate_bucket import BucketResult, ConsolidateBucket, EmbedFactory, Plan
from pipelines.decisions import decision_id, run_id, to_event
from pipelines.hot_memories import HotMemoriesTable
from pipelines.options import new_pipeline, pipeline_options, step_errors
from pipelines.vectors import VectorCache
from streams.producer import EventProducer

# A bucket's vector cache is rewritten once rows of changed or gone memories are this share of it.
_STALE_SHARE = 0.2


@dataclass
class ConsolidationReport:
    watermark: int
    as_of: str
    dry_run: bool
    memories: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    events_sent: int = 0
    already_logged: int = 0
    embedded: int = 0
    vectors_appended: int = 0
    vectors_compacted: int = 0
    hot_selected: int = 0
    hot_table_version: int | None = None
    unreadable: int = 0
    actions: list[str] = field(default_factory=list)

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.decisions.items())) or "no decisions"
        mode = "dry run: would send" if self.dry_run else "sent"
        return (
            f"snapshot {self.watermark} as of {self.as_of}: {self.memories} memories; {counts}; "
            f"{mode} {self.events_sent} events ({self.already_logged} already in the log); "
            f"embedded {self.embedded}; hot {self.hot_selected}"
        )


class Consolidate(beam.PTransform):  # type: ignore[type-arg]
    """Buckets of the snapshot -> one `BucketResult` each."""

    def __init__(self, plan: Plan, embed_factory: EmbedFactory) -> None:
        super().__init__()
        self._plan = plan
        self._embed_factory = embed_factory

    def expand(self, pbegin: Any) -> Any:
        return (
            pbegin
            | "Buckets" >> beam.Create(list(self._plan.buckets))
            | "Spread" >> beam.Reshuffle()
            | "Decide" >> beam.ParDo(ConsolidateBucket(self._plan, self._embed_factory))
        )


_EVENT_ID = re.compile(rb'"event_id"\s*:\s*"([0-9a-fA-F-]{36})"')


def _logged_ids(kafka: KafkaSettings, covered: dict[int, int]) -> set[str]:
    """Ids of the events logged after the snapshot (sent by an earlier run, not yet in the lake)."""
    from streams.reader import plan_ranges, read_range

    ids: set[str] = set()
    for span in plan_ranges(kafka, kafka.events_topic, after=covered):
        # Only ids are read, and the broker checked every batch's CRC on append: skip the
        # client's pure-Python CRC32C (about 250 µs a record).
        for record in read_range(kafka, span, check_crcs=False):
            # The envelope's only `event_id` field (payloads have none): no need to parse the event.
            found = _EVENT_ID.search(record.value or b"")
            if found is not None:
                ids.add(found.group(1).decode().lower())
    return ids


def _refused_ids(lake: Lake, ids: Sequence[str]) -> set[str]:
    """Which of `ids` the fold already refused (a redelivery would be refused again)."""
    if not ids or not lake.exists("rejected"):
        return set()
    from lake.scan import scan

    data = scan(
        lake.table("rejected"),
        lake.spec("rejected"),
        columns=["event_id"],
        filter=pc.field("event_id").isin(pa.array(sorted(ids), pa.string())),
    )
    return set(data.column("event_id").to_pylist())


class CommitDecisions(beam.DoFn):
    """Every bucket's result -> events sent, vectors cached, hot memories replaced; the one writer."""

    def __init__(self, plan: Plan, report_path: str) -> None:
        self._plan = plan
        self._report_path = report_path

    def process(self, results: list[BucketResult]) -> Iterator[str]:
        plan = self._plan
        lake = Lake(plan.lake)
        report = ConsolidationReport(plan.watermark, plan.as_of.isoformat(), plan.dry_run)
        decisions = sorted((d for r in results for d in r.decisions), key=lambda d: d.sort_key)
        contents = {k: v for r in results for k, v in r.contents.items()}
        for r in results:
            report.memories += r.memories
            report.embedded += r.embedded
            report.unreadable += r.unreadable
        for d in decisions:
            report.decisions[d.rule] = report.decisions.get(d.rule, 0) + 1
        correlation = run_id(plan.watermark, plan.as_of)
        events_version = lake.table("events", version=plan.watermark) if plan.watermark >= 0 else None
        covered = (
            lake.land_offsets(plan.kafka.events_topic, range(1024), dt=events_version)
            if events_version is not None
            else {}
        )
        ids = [str(decision_id(d)) for d in decisions]
        known = _logged_ids(plan.kafka, covered) | _refused_ids(lake, ids)
        pending = []
        for d, event_id in zip(decisions, ids, strict=True):
            if event_id in known:
                report.already_logged += 1
                continue
            content = contents.get((d.cube_id, d.content_from)) if d.content_from else None
            pending.append(
                to_event(
                    d, now=plan.as_of, watermark=plan.watermark, correlation_id=correlation, content=content
                )
            )
            report.actions.append(d.describe())
        report.events_sent = len(pending)
        hot = [row for r in results for row in r.hot]
        report.hot_selected = len(hot)
        if not plan.dry_run:
            if pending:
                with EventProducer(plan.kafka) as producer:
                    producer.send_many(pending)
            cache = VectorCache(lake, embedder=plan.embedder)
            fresh = [r.new_vectors for r in results if r.new_vectors is not None and r.new_vectors.num_rows]
            if fresh:
                cache.append(pa.concat_tables(fresh))
                report.vectors_appended = sum(t.num_rows for t in fresh)
            for r in results:
                if r.stale_vectors and len(r.stale_vectors) > _STALE_SHARE * max(1, r.cached_rows):
                    report.vectors_compacted += cache.compact_bucket(r.bucket, set(r.stale_vectors))
            report.hot_table_version = HotMemoriesTable(lake).replace(hot, cube_id=plan.cube_id)
        Path(self._report_path).write_text(json.dumps(asdict(report), default=str))
        yield self._report_path


def plan_consolidation(
    settings: Settings,
    *,
    as_of: datetime,
    cube_id: str | None = None,
    full: bool = False,
    dry_run: bool = False,
) -> Plan | None:
    """The plan of a run on the newest consistent snapshot (None when the lake holds nothing yet)."""
    lake = Lake(settings.lake)
    snapshot = open_snapshot(lake, tables=("memories", "cubes", "usage"))
    if snapshot.watermark < 0:
        return None
    buckets = settings.lake.buckets
    chosen = (bucket_of(cube_id, buckets),) if cube_id is not None else tuple(range(buckets))
    return Plan(
        lake=settings.lake,
        governance=settings.governance,
        kafka=settings.kafka,
        embedder=settings.models.embedder,
        watermark=snapshot.watermark,
        versions=dict(snapshot.versions),
        as_of=as_of,
        buckets=chosen,
        cube_id=cube_id,
        full=full,
        dry_run=dry_run,
    )


def run_consolidate(
    settings: Settings,
    embed_factory: EmbedFactory,
    *,
    as_of: datetime,
    cube_id: str | None = None,
    full: bool = False,
    dry_run: bool = False,
    beam_args: Sequence[str] = (),
) -> ConsolidationReport:
    """One consolidation run on the newest snapshot."""
    plan = plan_consolidation(settings, as_of=as_of, cube_id=cube_id, full=full, dry_run=dry_run)
    if plan is None:
        return ConsolidationReport(-1, as_of.isoformat(), dry_run)
    with tempfile.TemporaryDirectory(prefix="memlake-consolidate-") as folder:
        report_path = str(Path(folder) / "report.json")
        with step_errors(), new_pipeline(pipeline_options(settings.pipelines, beam_args)) as pipeline:
            _ = (
                pipeline
                | "Consolidate" >> Consolidate(plan, embed_factory)
                | "Collect" >> combiners.ToList()
                | "Commit" >> beam.ParDo(CommitDecisions(plan, report_path))
            )
        data = json.loads(Path(report_path).read_text())
    return ConsolidationReport(**data)
