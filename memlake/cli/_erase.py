"""`memlake erase SUBJECT`: crypto-shred a subject and make every layer drop what came from them.

Wiring only: the footprint, the permission check and the events come from
`pipelines.erasure`; the key from `streams.sealing`; the index from
`serving`; the artifacts from `training`. The order matters:

1. footprint and permission (nothing is destroyed if any cube refuses);
2. destroy the subject's data key: from here on every sealed copy, in Kafka,
   in the lake and in backups, is unreadable;
3. send `memory.deleted` for tainted artifacts and `subject.erased` per cube;
4. drop consolidation's vectors and hot rows, the index rows of every
   version, the KV caches built from the subject, and withdraw the adapters
   trained on them (tagged tainted, champion alias removed);
5. optionally materialize now (single machine) or wait for the running
   materializer, then vacuum: files older than the rollback window go.
"""

from __future__ import annotations

__all__ = ["ErasureReport", "erase_subject"]

import time
from dataclasses import dataclass, field

from lake.maintenance import vacuum
from lake.schemas import DERIVED_TABLES
from lake.snapshot import open_snapshot
from lake.tables import Lake
from memlake.errors import ArtifactError, InfrastructureError, LeaseHeldError, VectorIndexError
from memlake.model import Actor, MemoryKind
from memlake.settings import Settings
from pipelines.consolidation_tables import HOT_MEMORIES, HOT_SCHEMA, VECTORS, VECTORS_SCHEMA, OwnTable
from pipelines.erasure import Footprint, check_permission, erasure_events, find_footprint, forget_derived
from streams.producer import Delivery, EventProducer
from streams.sealing import LocalKeyStore

# `--materialize` while another process is the lake's writer: how long to wait for it instead.
_WAIT_FOR_WRITER_S = 120.0


@dataclass
class ErasureReport:
    subject_id: str
    footprint: Footprint
    dry_run: bool = False
    key_id: str | None = None
    events: list[Delivery] = field(default_factory=list)
    derived_rows: dict[str, int] = field(default_factory=dict)
    index_rows: int = 0
    index_note: str | None = None
    kv_caches_deleted: list[str] = field(default_factory=list)
    adapters_withdrawn: list[str] = field(default_factory=list)
    champions_removed: int = 0
    materialized: bool = False
    vacuumed_files: int = 0
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        f = self.footprint
        verb = "would erase" if self.dry_run else "erased"
        out = [
            f"{verb} subject {self.subject_id}: {len(f.cubes)} cube(s) {', '.join(f.cubes) or '-'}; "
            f"{sum(len(v) for v in f.memories.values())} memories, {len(f.versions)} versions; "
            f"{len(f.artifacts)} artifacts built from them"
        ]
        if not self.dry_run:
            out.append(
                f"data key {self.key_id or '(none existed)'} destroyed; {len(self.events)} events sent"
            )
            out.append(
                f"derived rows dropped: {self.derived_rows}; index rows {self.index_rows}; "
                f"KV caches deleted {len(self.kv_caches_deleted)}; adapters withdrawn "
                f"{len(self.adapters_withdrawn)} ({self.champions_removed} were champions)"
            )
            if self.materialized:
                out.append(
                    f"materialized; vacuum removed {self.vacuumed_files} files past the rollback window"
                )
        if f.clear_text_versions:
            out.append(
                f"warning: {f.clear_text_versions} memory versions about the subject were written in clear "
                "text: the derived tables drop them, but Kafka and the events table keep those bytes until "
                "the log's retention (seal subject content: policy encrypt_content)"
            )
        out.extend(self.notes)
        return out


def _purge_index(settings: Settings, footprint: Footprint, report: ErasureReport) -> None:
    from serving.milvus import open_vector_index
    from serving.vector_index import IndexKey

    keys = [IndexKey(c, m, v) for c, m, v in footprint.versions]
    if not keys:
        return
    index = open_vector_index(settings.serving, settings.models)
    try:
        index.ensure()
        present = index.row_keys()
        doomed = [k for k in keys if k in present]
        index.delete(doomed)
        index.flush()
        report.index_rows = len(doomed)
    except VectorIndexError as e:
        # A running service holds the index: its keeper drops erased versions as it follows the lake.
        report.index_note = f"index not purged here ({e.problem}); the serving keeper drops erased versions"
        report.notes.append(report.index_note)
    finally:
        index.close()


def _artifacts(settings: Settings, footprint: Footprint, report: ErasureReport) -> None:
    from training.artifacts import FileSystemArtifactStore
    from training.tracking import MlflowTracker

    if not footprint.artifacts:
        return
    store = FileSystemArtifactStore(settings.training.artifacts_root)
    tracker = MlflowTracker(settings.training)
    reason = f"trained on content of erased subject {footprint.subject_id}"
    for artifact in footprint.artifacts:
        try:
            store.delete(artifact.uri)
        except ArtifactError as e:
            report.notes.append(f"could not delete {artifact.uri}: {e.problem}")
        if artifact.kind is MemoryKind.ACTIVATION:
            report.kv_caches_deleted.append(artifact.uri)
        elif artifact.mlflow_model_version:
            report.champions_removed += tracker.withdraw(artifact.mlflow_model_version, reason=reason)
            report.adapters_withdrawn.append(artifact.mlflow_model_version)


def _wait_covered(settings: Settings, deliveries: list[Delivery], timeout_s: float) -> bool:
    lake = Lake(settings.lake)
    deadline = time.monotonic() + timeout_s
    while True:
        snapshot = open_snapshot(lake, tables=("memories", "memory_versions", "cubes"))
        if all(snapshot.covers(d.topic, d.partition, d.offset) for d in deliveries):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def _vacuum(lake: Lake) -> int:
    removed = sum(int(r.details["files"]) for r in vacuum(lake, DERIVED_TABLES))
    hours = lake.settings.rollback_window_hours
    for table in (OwnTable(lake, VECTORS, VECTORS_SCHEMA), OwnTable(lake, HOT_MEMORIES, HOT_SCHEMA)):
        if table.exists():
            dt = table.table()
            removed += len(dt.vacuum(retention_hours=hours, dry_run=False, enforce_retention_duration=True))
    return removed


def erase_subject(
    settings: Settings,
    subject_id: str,
    *,
    actor: Actor,
    dry_run: bool = False,
    materialize: bool = False,
    wait_s: float | None = None,
) -> ErasureReport:
    lake = Lake(settings.lake)
    footprint = find_footprint(settings, subject_id)
    report = ErasureReport(subject_id, footprint, dry_run=dry_run)
    # Before a dry run too: it says what the run would do, and for a principal the policies
    # refuse, that is nothing (and the subject's footprint is not theirs to see).
    check_permission(lake, footprint, actor)
    if dry_run:
        return report
    report.key_id = LocalKeyStore(settings.governance.key_store).destroy(subject_id)
    events = erasure_events(footprint, key_id=report.key_id, actor=actor)
    if events:
        with EventProducer(settings.kafka) as producer:
            report.events = producer.send(events)
    report.derived_rows = forget_derived(lake, footprint, embedder=settings.models.embedder)
    _purge_index(settings, footprint, report)
    try:
        _artifacts(settings, footprint, report)
    except InfrastructureError as e:
        report.notes.append(f"artifacts not all withdrawn: {e}")
    if materialize:
        from pipelines.follow import run_jobs

        try:
            run_jobs(settings)
            report.materialized = True
        except LeaseHeldError as e:
            # A follower writes the lake: it materializes the erasure, this process waits for it.
            report.notes.append(f"land and materialize left to the lake's running writer ({e.holder})")
            wait_s = _WAIT_FOR_WRITER_S if wait_s is None else wait_s
    if not report.materialized and wait_s is not None and report.events:
        report.materialized = _wait_covered(settings, report.events, wait_s)
        if not report.materialized:
            report.notes.append(f"the lake did not cover the erasure within {wait_s:g} s; vacuum skipped")
    if report.materialized:
        report.vacuumed_files = _vacuum(lake)
    return report
