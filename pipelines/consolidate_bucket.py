"""One bucket of cubes of a consolidation run: read, open, embed what is new, decide.

`ConsolidateBucket` is the worker of `pipelines.consolidate`: for its bucket
of the snapshot it reads the active and archived memories (sealed content
opened with the subject's key), applies expiry and retention, then dedupe
and contradictions (`pipelines.dedupe`, embedding only what the vector
cache lacks), then decay, and picks the bucket's hot memories. It writes
nothing: its `BucketResult` goes to the job's single committer.
"""

from __future__ import annotations

__all__ = ["EmbedFactory", "Plan", "BucketResult", "ConsolidateBucket"]

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from lake.snapshot import Snapshot
from lake.tables import Lake
from memlake.errors import SealedContentError
from memlake.model import Content, Memory, MemoryKind, MemoryStatus, Policy
from memlake.settings import GovernanceSettings, KafkaSettings, LakeSettings
from pipelines.dedupe import DedupeRules, dedupe_group, groups_of
from pipelines.hot_memories import HotRules, heat_of, select_hot
from pipelines.lifecycle import CubePolicy, Decision, MemoryRow, lifecycle_decisions
from pipelines.vectors import Embed, VectorCache, Vectors, content_digest, text_digest
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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _pylist(column: pa.ChunkedArray) -> list[Any]:
    """Python values of a column; UTC timestamps through integers (5x faster than pyarrow's own)."""
    if pa.types.is_timestamp(column.type):
        micros = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
        return [None if v is None else _EPOCH + timedelta(microseconds=v) for v in micros]
    values: list[Any] = column.to_pylist()
    return values


def _row(values: tuple[Any, ...]) -> MemoryRow:
    """A `memories` row (the `_COLUMNS`, in order) as consolidation sees it; `text` is the clear text."""
    (cube_id, memory_id, version, kind, status, memory_type, tags, text, sealed, subject_id, visibility,
     priority, pinned, expires_at, last_accessed_at, created_at, updated_at) = values  # fmt: skip
    return MemoryRow(
        cube_id=cube_id,
        memory_id=memory_id,
        version=int(version),
        kind=MemoryKind(kind),
        status=MemoryStatus(status),
        memory_type=memory_type,
        tags=tuple(tags or ()),
        subject_id=subject_id,
        visibility=visibility,
        priority=float(priority),
        pinned=bool(pinned),
        sealed=bool(sealed),
        expires_at=expires_at,
        last_accessed_at=last_accessed_at,
        created_at=created_at,
        updated_at=updated_at,
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
        self._parsed: dict[str, CubePolicy] = {}
        self._policies = dict(
            zip(cubes.column("cube_id").to_pylist(), cubes.column("policy_json").to_pylist(), strict=True)
        )

    def _policy(self, cube_id: str) -> CubePolicy:
        known = self._parsed.get(cube_id)
        if known is None:
            g = self._plan.governance
            raw = self._policies.get(cube_id)
            policy = Policy.model_validate_json(raw) if raw else Policy()
            known = CubePolicy.of(
                policy, half_life_days=g.decay_half_life_days, archive_below=g.archive_below_priority
            )
            self._parsed[cube_id] = known
        return known

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
        rows = [_row(values) for values in zip(*(_pylist(data.column(n)) for n in _COLUMNS), strict=True)]
        contents: dict[tuple[str, str], Content] = {}
        readable = [r.status is MemoryStatus.ACTIVE and r.kind is MemoryKind.PLAINTEXT for r in rows]
        sealed = self._memories(
            bucket,
            [(r.cube_id, r.memory_id) for r, ok in zip(rows, readable, strict=True) if ok and r.sealed],
        )
        for index, (row, ok) in enumerate(zip(rows, readable, strict=True)):
            key = (row.cube_id, row.memory_id)
            if not ok:
                rows[index] = replace(row, text=None)
            elif row.sealed:
                memory = sealed.get(key)
                text: str | None = None
                if memory is not None and memory.content is not None:
                    try:
                        text = self._sealer.open(memory.content)
                        contents[key] = memory.content
                    except SealedContentError:
                        result.unreadable += 1  # the subject's key is gone: erasure will follow
                rows[index] = replace(row, text=text)

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
        for d in self._dedupe(bucket, candidates, contents, result, set(by_cube)):
            decided.add((d.cube_id, d.memory_id))
            decided.update((d.cube_id, m) for m, _ in d.sources)
        decided_in: dict[str, set[str]] = {}
        for c, m in decided:
            decided_in.setdefault(c, set()).add(m)
        for cube_id, cube_rows in sorted(by_cube.items()):
            result.decisions.extend(
                lifecycle_decisions(
                    cube_rows,
                    self._policy(cube_id),
                    plan.as_of,
                    exclude=frozenset(decided_in.get(cube_id, ())),
                    stages=frozenset({"decay"}),
                )
            )
        # Hot memories leave out what this run expires, archives or merges away (not merge survivors).
        gone = {(d.cube_id, d.memory_id) for d in result.decisions if d.rule != "merge"}
        gone |= {(d.cube_id, m) for d in result.decisions if d.rule == "merge" for m, _ in d.sources}
        gone -= {(d.cube_id, d.memory_id) for d in result.decisions if d.rule == "merge"}
        result.hot = self._hot(bucket, rows, gone)
        yield result

    def _dedupe(
        self,
        bucket: int,
        candidates: list[MemoryRow],
        contents: dict[tuple[str, str], Content],
        result: BucketResult,
        cube_ids: set[str],
    ) -> list[Decision]:
        plan = self._plan
        cached, result.cached_rows = self._cache.load(bucket, cube_ids, sealer=self._sealer)
        digests = {
            (r.cube_id, r.memory_id): (
                content_digest(contents[(r.cube_id, r.memory_id)]) if r.sealed else text_digest(r.text or "")
            )
            for r in candidates
        }
        live = {(c, m, sha) for (c, m), sha in digests.items()}
        result.stale_vectors = sorted(k for k in cached.stored_keys() if k not in live)
        missing = [
            r for r in candidates if (r.cube_id, r.memory_id, digests[(r.cube_id, r.memory_id)]) not in cached
        ]
        vectors: dict[tuple[str, str], Vectors] = {}
        text_of = {(r.cube_id, r.memory_id): r.text or "" for r in candidates}
        is_new = {(r.cube_id, r.memory_id) for r in missing}
        if missing:
            fresh = self._embed_texts([r.text or "" for r in missing])
            result.embedded = len(missing)
            entries = []
            for r, vector in zip(missing, fresh, strict=True):
                key = (r.cube_id, r.memory_id)
                vectors[key] = vector
                content = contents.get(key) or Content(text=r.text or "")
                entries.append((bucket, r.cube_id, r.memory_id, content, r.subject_id, vector))
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
            matrix = None
            if any(new):
                for k in keys:
                    if k not in vectors:
                        hit = cached.get((*k, digests[k]))
                        # None: cached sealed, but its key is gone since; embed it again.
                        vectors[k] = hit if hit is not None else self._embed_texts([text_of[k]])[0]
                matrix = np.stack([vectors[k] for k in keys])
            decisions.extend(dedupe_group(group, matrix, new, rules))
        decisions = self._compatible(bucket, decisions)
        for d in decisions:
            if d.rule == "merge" and d.content_from is not None:
                key = (d.cube_id, d.content_from)
                result.contents[key] = contents.get(key) or Content(text=text_of[key])
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

    def _hot(self, bucket: int, rows: list[MemoryRow], gone: set[tuple[str, str]]) -> list[dict[str, Any]]:
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
        return select_hot(
            rows, heat, rules, exclude=frozenset(gone), watermark=plan.watermark, as_of=plan.as_of
        )
