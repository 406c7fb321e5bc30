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
    "plan_consolidation",
    "run_consolidate",
]

import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.transforms import combiners

from lake.schemas import bucket_of
from lake.snapshot import Snapshot, open_snapshot
from lake.tables import Lake
from memlake.errors import SealedContentError
from memlake.model import Content, Memory, MemoryKind, MemoryStatus, Policy
from memlake.settings import GovernanceSettings, KafkaSettings, LakeSettings, Settings
from pipelines.decisions import decision_id, run_id, to_event
from pipelines.dedupe import DedupeRules, dedupe_group, groups_of
from pipelines.hot_memories import HotMemoriesTable, HotRules, heat_of, select_hot
from pipelines.lifecycle import CubePolicy, Decision, MemoryRow, lifecycle_decisions
from pipelines.options import pipeline_options
from pipelines.vectors import Embed, VectorCache, Vectors, content_digest
from streams.producer import EventProducer
from streams.sealing import LocalKeyStore, Sealer

EmbedFactory = Callable[[], Embed]

_COLUMNS = [
    "cube_id",
    "memory_id",
    "version",
    "kind",
    "status",
    "memory_type",
    "tags",
    "text",
    "sealed",
    "subject_id",
    "visibility",
    "priority",
    "pinned",
    "expires_at",
    "last_accessed_at",
    "created_at",
    "updated_at",
]
# A bucket's vector cache is rewritten once rows of changed or gone memories are this share of it.
_STALE_SHARE = 0.2


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs; picklable."""

    lake: LakeSettings
    governance: GovernanceSettings
    kafka: KafkaSettings
    embedder: str
    watermark: int
    versions: dict[str, int | None]
    as_of: datetime
    buckets: tuple[int, ...]
    cube_id: str | None = None
    full: bool = False  # compare every pair, not only pairs with a new memory
    dry_run: bool = False

    @property
    def dedupe_rules(self) -> DedupeRules:
        g = self.governance
        return DedupeRules(
            merge_similarity=g.merge_similarity,
            contradiction_similarity=g.contradiction_similarity,
            fact_types=frozenset(g.fact_types),
            fact_key_prefix=g.fact_key_prefix,
        )

    @property
    def hot_rules(self) -> HotRules:
        g = self.governance
        return HotRules(g.hot_window_days, g.hot_half_life_days, g.hot_per_cube, g.hot_min_accesses)


@dataclass
class BucketResult:
    bucket: int
    decisions: list[Decision] = field(default_factory=list)
    # The content each merge keeps, by (cube_id, memory_id) of the member it comes from.
    contents: dict[tuple[str, str], Content] = field(default_factory=dict)
    new_vectors: pa.Table | None = None
    stale_vectors: list[tuple[str, str, str]] = field(default_factory=list)
    cached_rows: int = 0
    hot: list[dict[str, Any]] = field(default_factory=list)
    memories: int = 0
    embedded: int = 0
    unreadable: int = 0


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


def _row(values: dict[str, Any], text: str | None) -> MemoryRow:
    return MemoryRow(
        cube_id=values["cube_id"],
        memory_id=values["memory_id"],
        version=int(values["version"]),
        kind=MemoryKind(values["kind"]),
        status=MemoryStatus(values["status"]),
        memory_type=values["memory_type"],
        tags=tuple(values["tags"] or ()),
        subject_id=values["subject_id"],
        visibility=values["visibility"],
        priority=float(values["priority"]),
        pinned=bool(values["pinned"]),
        sealed=bool(values["sealed"]),
        expires_at=values["expires_at"],
        last_accessed_at=values["last_accessed_at"],
        created_at=values["created_at"],
        updated_at=values["updated_at"],
        text=text,
    )


class ConsolidateBucket(beam.DoFn):
    """One bucket of cubes -> its decisions, new vectors and hot memories."""

    def __init__(self, plan: Plan, embed_factory: EmbedFactory) -> None:
        self._plan = plan
        self._embed_factory = embed_factory
        self._embed: Embed | None = None

    def setup(self) -> None:
        plan = self._plan
        self._lake = Lake(plan.lake)
        self._snapshot = Snapshot(self._lake, plan.watermark, dict(plan.versions))
        self._sealer = Sealer(LocalKeyStore(plan.governance.key_store))
        self._cache = VectorCache(self._lake, embedder=plan.embedder)
        cubes = self._snapshot.read("cubes", columns=["cube_id", "policy_json"])
        self._policies = dict(
            zip(cubes.column("cube_id").to_pylist(), cubes.column("policy_json").to_pylist(), strict=True)
        )

    def _policy(self, cube_id: str) -> CubePolicy:
        g = self._plan.governance
        raw = self._policies.get(cube_id)
        policy = Policy.model_validate_json(raw) if raw else Policy()
        return CubePolicy.of(
            policy, half_life_days=g.decay_half_life_days, archive_below=g.archive_below_priority
        )

    def _read(self, bucket: int) -> pa.Table:
        where = (pc.field("bucket") == bucket) & pc.field("status").isin(
            pa.array([MemoryStatus.ACTIVE.value, MemoryStatus.ARCHIVED.value])
        )
        if self._plan.cube_id is not None:
            where = where & (pc.field("cube_id") == self._plan.cube_id)
        return self._snapshot.read("memories", columns=_COLUMNS, filter=where, prune=f"bucket = {bucket}")

    def _memories(self, bucket: int, ids: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Memory]:
        if not ids:
            return {}
        where = (pc.field("bucket") == bucket) & pc.field("memory_id").isin(
            pa.array(sorted({m for _, m in ids}), pa.string())
        )
        data = self._snapshot.read(
            "memories",
            columns=["cube_id", "memory_id", "memory_json"],
            filter=where,
            prune=f"bucket = {bucket}",
        )
        wanted = set(ids)
        out = {}
        for cube_id, memory_id, value in zip(
            *(data.column(c).to_pylist() for c in ("cube_id", "memory_id", "memory_json")), strict=True
        ):
            if (cube_id, memory_id) in wanted:
                out[(cube_id, memory_id)] = Memory.model_validate_json(value)
        return out

    def process(self, bucket: int) -> Iterator[BucketResult]:
        plan = self._plan
        data = self._read(bucket)
        result = BucketResult(bucket, memories=data.num_rows)
        if data.num_rows == 0:
            yield result
            return
        columns = {name: data.column(name).to_pylist() for name in _COLUMNS}
        values = [{name: columns[name][i] for name in _COLUMNS} for i in range(data.num_rows)]
        readable = [
            v["status"] == MemoryStatus.ACTIVE.value and v["kind"] == MemoryKind.PLAINTEXT.value
            for v in values
        ]
        sealed_ids = [
            (v["cube_id"], v["memory_id"])
            for v, ok in zip(values, readable, strict=True)
            if ok and v["sealed"]
        ]
        sealed = self._memories(bucket, sealed_ids)
        contents: dict[tuple[str, str], Content] = {}
        rows: list[MemoryRow] = []
        for v, ok in zip(values, readable, strict=True):
            key = (v["cube_id"], v["memory_id"])
            text: str | None = None
            if ok and v["sealed"]:
                memory = sealed.get(key)
                if memory is not None and memory.content is not None:
                    try:
                        text = self._sealer.open(memory.content)
                        contents[key] = memory.content
                    except SealedContentError:
                        result.unreadable += 1  # the subject's key is gone: erasure will follow
            elif ok and v["text"] is not None:
                text = v["text"]
                contents[key] = Content(text=text)
            rows.append(_row(v, text))

        by_cube: dict[str, list[MemoryRow]] = {}
        for row in rows:
            by_cube.setdefault(row.cube_id, []).append(row)
        decided: set[tuple[str, str]] = set()
        for cube_id, cube_rows in sorted(by_cube.items()):
            found = lifecycle_decisions(
                cube_rows, self._policy(cube_id), plan.as_of, stages=frozenset({"expire", "retain"})
            )
            result.decisions.extend(found)
            decided.update((d.cube_id, d.memory_id) for d in found)

        candidates = [r for r in rows if r.text is not None and (r.cube_id, r.memory_id) not in decided]
        merges = self._dedupe(bucket, candidates, contents, result)
        for d in merges:
            decided.add((d.cube_id, d.memory_id))
            decided.update((d.cube_id, m) for m, _ in d.sources)
        for cube_id, cube_rows in sorted(by_cube.items()):
            exclude = frozenset(m for c, m in decided if c == cube_id)
            result.decisions.extend(
                lifecycle_decisions(
                    cube_rows, self._policy(cube_id), plan.as_of, exclude=exclude, stages=frozenset({"decay"})
                )
            )
        survivors = {(d.cube_id, d.memory_id) for d in result.decisions if d.rule == "merge"}
        gone = frozenset(m for c, m in {(d.cube_id, d.memory_id) for d in result.decisions} - survivors)
        gone = gone | frozenset(
            m for d in result.decisions if d.rule == "merge" for m, _ in d.sources if m != d.memory_id
        )
        result.hot = self._hot(bucket, rows, gone)
        yield result

    def _dedupe(
        self,
        bucket: int,
        candidates: list[MemoryRow],
        contents: dict[tuple[str, str], Content],
        result: BucketResult,
    ) -> list[Decision]:
        plan = self._plan
        cached, result.cached_rows = self._cache.load(
            bucket, {r.cube_id for r in candidates}, sealer=self._sealer
        )
        digests = {
            (r.cube_id, r.memory_id): content_digest(contents[(r.cube_id, r.memory_id)]) for r in candidates
        }
        live = {(c, m, sha) for (c, m), sha in digests.items()}
        cube_scope = {r.cube_id for r in candidates}
        result.stale_vectors = sorted(
            k for k in cached if k not in live and (plan.cube_id is None or k[0] in cube_scope)
        )
        vectors: dict[tuple[str, str], Vectors] = {}
        missing: list[MemoryRow] = []
        for r in candidates:
            key = (r.cube_id, r.memory_id)
            hit = cached.get((*key, digests[key]))
            if hit is None:
                missing.append(r)
            else:
                vectors[key] = hit
        is_new = {(r.cube_id, r.memory_id) for r in missing}
        if missing:
            fresh = self._embed_texts([r.text or "" for r in missing])
            result.embedded = len(missing)
            entries = []
            for r, vector in zip(missing, fresh, strict=True):
                key = (r.cube_id, r.memory_id)
                vectors[key] = vector
                entries.append((bucket, r.cube_id, r.memory_id, contents[key], r.subject_id, vector))
            result.new_vectors = self._cache.rows(entries, sealer=self._sealer)

        import numpy as np

        rules = plan.dedupe_rules
        decisions: list[Decision] = []
        for _, members in sorted(groups_of(candidates).items()):
            if len(members) < 2:
                continue
            group = [candidates[i] for i in members]
            keys = [(r.cube_id, r.memory_id) for r in group]
            new = [plan.full or k in is_new for k in keys]
            matrix = np.stack([vectors[k] for k in keys]) if any(new) else None
            found = self._compatible(bucket, dedupe_group(group, matrix, new, rules))
            decisions.extend(found)
            for d in found:
                if d.rule == "merge" and d.content_from is not None:
                    result.contents[(d.cube_id, d.content_from)] = contents[(d.cube_id, d.content_from)]
        result.decisions.extend(decisions)
        return decisions

    def _compatible(self, bucket: int, decisions: list[Decision]) -> list[Decision]:
        """Drop merges whose members differ in who may read them (a merge must not widen access)."""
        merges = [d for d in decisions if d.rule == "merge"]
        if not merges:
            return decisions
        members = self._memories(bucket, [(d.cube_id, m) for d in merges for m, _ in d.sources])
        out = []
        for d in decisions:
            if d.rule == "merge":
                overrides = {
                    (
                        members[(d.cube_id, m)].governance.readers_override
                        if (d.cube_id, m) in members
                        else ("?",)
                    )
                    for m, _ in d.sources
                }
                if len(overrides) != 1:
                    continue
            out.append(d)
        return out

    def _embed_texts(self, texts: list[str]) -> Vectors:
        import numpy as np

        if self._embed is None:
            self._embed = self._embed_factory()
        unique = sorted(set(texts))
        size = self._plan.governance.embed_batch_size
        parts = [self._embed(unique[i : i + size]) for i in range(0, len(unique), size)]
        # Compared as stored (float16), so a result never depends on whether a vector was cached.
        table = np.concatenate(parts).astype(np.float16).astype(np.float32)
        index = {t: i for i, t in enumerate(unique)}
        out: Vectors = table[[index[t] for t in texts]]
        return out

    def _hot(self, bucket: int, rows: list[MemoryRow], gone: frozenset[str]) -> list[dict[str, Any]]:
        plan = self._plan
        rules = plan.hot_rules
        today = plan.as_of.date()
        cube_ids = sorted({r.cube_id for r in rows})
        start = today - timedelta(days=rules.window_days - 1)
        where = (pc.field("day") >= pa.scalar(start, pa.date32())) & pc.field("cube_id").isin(
            pa.array(cube_ids, pa.string())
        )
        usage = self._snapshot.read(
            "usage",
            columns=["cube_id", "memory_id", "day", "access_count", "last_accessed_at"],
            filter=where,
            prune=f"day >= '{start.isoformat()}'",
        )
        heat = heat_of(
            zip(*(usage.column(c).to_pylist() for c in usage.column_names), strict=True), today, rules
        )
        return select_hot(rows, heat, rules, exclude=gone, watermark=plan.watermark, as_of=plan.as_of)


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


def _logged_ids(kafka: KafkaSettings, covered: dict[int, int]) -> set[str]:
    """Ids of the events logged after the snapshot (sent by an earlier run, not yet in the lake)."""
    from streams.reader import plan_ranges, read_range

    ids: set[str] = set()
    for span in plan_ranges(kafka, kafka.events_topic, after=covered):
        for record in read_range(kafka, span):
            try:
                value = json.loads(record.value or b"")
            except ValueError:
                continue  # a dead letter in the making: never one of ours
            if isinstance(value, dict) and isinstance(value.get("event_id"), str):
                ids.add(value["event_id"])
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
        with beam.Pipeline(options=pipeline_options(settings.pipelines, beam_args)) as pipeline:
            _ = (
                pipeline
                | "Consolidate" >> Consolidate(plan, embed_factory)
                | "Collect" >> combiners.ToList()
                | "Commit" >> beam.ParDo(CommitDecisions(plan, report_path))
            )
        data = json.loads(Path(report_path).read_text())
    return ConsolidationReport(**data)
