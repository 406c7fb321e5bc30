"""Erasure (the right to be forgotten) in an immutable log: find a subject's footprint, emit its erasure.

The log is never rewritten. Content about a person travels sealed under
their data key (`streams.sealing`); erasing them means:

1. find the footprint: the cubes that still hold content about the subject
   (memory versions with content, in the lake and in the log not landed
   yet), every version of those memories (the vector index holds one row per
   version), and the artifacts built from them: KV caches and adapters whose
   lineage reaches one of those memories, directly or through another artifact;
2. check that the asking principal may erase in every one of those cubes
   (policy `erase_by`; `system:*` actors may);
3. destroy the subject's key (the caller does, through the `KeyStore`);
4. emit, per cube, `memory.deleted` for each live tainted artifact and then
   `subject.erased`; materialize then removes the content from every version
   of every derived table (the fold shreds history too);
5. drop what consolidation derived (`memory_vectors`, `hot_memories`).

Content that was written in clear text leaves the derived tables the same
way, but its bytes stay in Kafka and in the `events` table until the log's
retention: `clear_text_versions` counts it so the operator knows.
"""

from __future__ import annotations

__all__ = [
    "ERASER",
    "TaintedArtifact",
    "Footprint",
    "find_footprint",
    "check_permission",
    "erasure_events",
    "forget_derived",
]

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from lake.rows import cube_from_json, memory_from_json
from lake.schemas import bucket_of
from lake.snapshot import Snapshot, open_snapshot
from lake.tables import Lake
from memlake.errors import ErasureDeniedError, InvalidEventError
from memlake.events import (
    CubeCreated,
    Event,
    MemoryAdded,
    MemoryDeleted,
    MemoryDeletedPayload,
    MemoryMerged,
    MemoryTransformed,
    MemoryUpdated,
    SubjectErased,
    SubjectErasedPayload,
    new_event,
    parse_event,
)
from memlake.fold import permits
from memlake.model import Actor, ActorKind, MemoryKind, MemoryStatus, Source, utcnow
from memlake.settings import Settings
from pipelines.hot_memories import HotMemoriesTable
from pipelines.vectors import VectorCache

ERASER = Actor(kind=ActorKind.SYSTEM, id="erasure")
_PRODUCT = "memlake-erase"
_LIVE = (MemoryStatus.ACTIVE, MemoryStatus.ARCHIVED)


@dataclass(frozen=True, slots=True)
class TaintedArtifact:
    """A KV cache or adapter whose lineage reaches the subject's content."""

    cube_id: str
    memory_id: str
    kind: MemoryKind
    status: MemoryStatus
    uri: str
    mlflow_model_version: str | None  # models:/<name>/<version> for adapters


@dataclass
class Footprint:
    subject_id: str
    cubes: list[str] = field(default_factory=list)
    memories: dict[str, set[str]] = field(default_factory=dict)  # cube -> memory ids about the subject
    versions: list[tuple[str, str, int]] = field(default_factory=list)  # (cube, memory, version), all
    artifacts: list[TaintedArtifact] = field(default_factory=list)
    clear_text_versions: int = 0  # memory versions about the subject written unsealed
    unlanded_events: int = 0  # events about the subject in the log past the lake's snapshot

    @property
    def empty(self) -> bool:
        return not self.cubes


def _tail_cubes(settings: Settings, covered: dict[int, int], subject_id: str) -> tuple[set[str], int]:
    """Cubes with content about the subject in the log past what the lake covers."""
    from streams.reader import plan_ranges, read_range

    cubes: set[str] = set()
    count = 0
    kafka = settings.kafka
    for span in plan_ranges(kafka, kafka.events_topic, after=covered):
        for record in read_range(kafka, span, timeout_s=settings.pipelines.read_timeout_s, check_crcs=False):
            if record.value is None or subject_id.encode() not in record.value:
                continue  # cheap: the subject id appears verbatim in any event about them
            try:
                event = parse_event(record.value)
            except InvalidEventError:
                continue
            if _about(event, subject_id):
                cubes.add(event.cube_id)
                count += 1
    return cubes, count


def _about(event: Event, subject_id: str) -> bool:
    if isinstance(event, CubeCreated):
        return event.payload.subject_id == subject_id
    if isinstance(event, MemoryAdded):
        p = event.payload
        return subject_id in (p.subject_id, p.content.subject_id if p.content else None)
    if isinstance(event, MemoryUpdated | MemoryMerged | MemoryTransformed):
        content = event.payload.content
        return content is not None and content.subject_id == subject_id
    return False


def find_footprint(settings: Settings, subject_id: str) -> Footprint:
    """Everything about `subject_id` that still holds content, from the newest lake snapshot and the log."""
    lake = Lake(settings.lake)
    footprint = Footprint(subject_id)
    snapshot = open_snapshot(lake, tables=("memories", "memory_versions", "cubes"))
    cube_rows = snapshot.read("cubes", columns=["cube_id", "subject_id"])
    subject_cubes = {
        c
        for c, s in zip(*(cube_rows.column(n).to_pylist() for n in ("cube_id", "subject_id")), strict=True)
        if s == subject_id
    }
    about = pc.field("subject_id") == subject_id
    if subject_cubes:
        about = about | pc.field("cube_id").isin(pa.array(sorted(subject_cubes), pa.string()))
    columns = ["cube_id", "memory_id", "version", "text", "sealed"]
    versions = snapshot.read("memory_versions", columns=columns, filter=about)
    holding: set[str] = set()
    for cube_id, memory_id, version, text, sealed in zip(
        *(versions.column(c).to_pylist() for c in columns), strict=True
    ):
        footprint.memories.setdefault(cube_id, set()).add(memory_id)
        footprint.versions.append((cube_id, memory_id, int(version)))
        if text is not None or sealed:
            holding.add(cube_id)  # some version still carries content: this cube needs erasing
            footprint.clear_text_versions += text is not None
    if snapshot.watermark >= 0:
        covered = lake.land_offsets(
            settings.kafka.events_topic, range(1024), dt=lake.table("events", version=snapshot.watermark)
        )
    else:
        covered = {}
    tail, footprint.unlanded_events = _tail_cubes(settings, covered, subject_id)
    footprint.cubes = sorted(holding | tail)
    footprint.artifacts = _tainted(lake, snapshot, footprint)
    footprint.versions.sort()
    return footprint


def _tainted(lake: Lake, snapshot: Snapshot, footprint: Footprint) -> list[TaintedArtifact]:
    """Artifact memories whose lineage reaches the subject's memories (transitively, within a cube)."""
    cubes = sorted(footprint.memories)
    if not cubes:
        return []
    buckets = lake.settings.buckets
    where = pc.field("cube_id").isin(pa.array(cubes, pa.string())) & pc.field("kind").isin(
        pa.array([MemoryKind.ACTIVATION.value, MemoryKind.PARAMETRIC.value], pa.string())
    )
    prune = "bucket IN (" + ", ".join(str(b) for b in sorted({bucket_of(c, buckets) for c in cubes})) + ")"
    rows = snapshot.read("memories", columns=["memory_json"], filter=where, prune=prune)
    artifacts = [memory_from_json(v) for v in rows.column("memory_json").to_pylist()]
    tainted: dict[tuple[str, str], TaintedArtifact] = {}
    grew = True
    while grew:
        grew = False
        for memory in artifacts:
            key = (memory.cube_id, memory.memory_id)
            if key in tainted or memory.artifact is None:
                continue
            reached = footprint.memories.get(memory.cube_id, set()) | {
                m for c, m in tainted if c == memory.cube_id
            }
            if any(ref.memory_id in reached for ref in memory.header.lineage):
                tainted[key] = TaintedArtifact(
                    memory.cube_id,
                    memory.memory_id,
                    memory.kind,
                    memory.status,
                    memory.artifact.uri,
                    memory.artifact.mlflow_model_version,
                )
                grew = True
    return sorted(tainted.values(), key=lambda a: (a.cube_id, a.memory_id))


def check_permission(lake: Lake, footprint: Footprint, actor: Actor) -> None:
    """Raise `ErasureDeniedError` unless `actor` may erase in every cube of the footprint."""
    if actor.kind is ActorKind.SYSTEM or not footprint.cubes:
        return
    snapshot = open_snapshot(lake, tables=("cubes",))
    rows = snapshot.read(
        "cubes",
        columns=["cube_json"],
        filter=pc.field("cube_id").isin(pa.array(footprint.cubes, pa.string())),
    )
    known = {cube.cube_id: cube for cube in (cube_from_json(v) for v in rows.column("cube_json").to_pylist())}
    principal = actor.principal
    denied = []
    for cube_id in footprint.cubes:
        cube = known.get(cube_id)
        if cube is None:
            denied.append(cube_id)  # not materialized yet: nobody but the system can vouch for it
            continue
        if not permits(cube, actor, cube.policy.erase_by):
            denied.append(cube_id)
    if denied:
        raise ErasureDeniedError(footprint.subject_id, principal=principal, cubes=tuple(denied))


def erasure_events(footprint: Footprint, *, key_id: str | None, actor: Actor = ERASER) -> list[Event]:
    """Per cube: `memory.deleted` for its live tainted artifacts, then `subject.erased`."""
    now = utcnow()
    source = Source(product=_PRODUCT, ref=f"subject:{footprint.subject_id}")
    out: list[Event] = []
    for cube_id in footprint.cubes:
        for artifact in footprint.artifacts:
            if artifact.cube_id != cube_id or artifact.status not in _LIVE:
                continue
            reason = f"built from content of erased subject {footprint.subject_id}"
            event = new_event(
                MemoryDeleted,
                cube_id=cube_id,
                memory_id=artifact.memory_id,
                actor=actor,
                payload=MemoryDeletedPayload(reason=reason),
                occurred_at=now,
                source=source,
            )
            out.append(event)
        event = new_event(
            SubjectErased,
            cube_id=cube_id,
            actor=actor,
            payload=SubjectErasedPayload(subject_id=footprint.subject_id, key_id=key_id),
            occurred_at=now,
            source=source,
        )
        out.append(event)
    return out


def forget_derived(lake: Lake, footprint: Footprint, *, embedder: str) -> dict[str, int]:
    """Drop the subject's rows from the tables consolidation derives; rows deleted per table."""
    memories = {(c, m) for c, ids in footprint.memories.items() for m in ids}
    return {
        "memory_vectors": VectorCache(lake, embedder=embedder).forget(
            subject_id=footprint.subject_id, memories=memories
        ),
        "hot_memories": HotMemoriesTable(lake).forget(subject_id=footprint.subject_id, memories=memories),
    }
