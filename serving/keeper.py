"""The snapshot keeper: pins a snapshot of the lake, moves it forward, keeps the vector index in step.

One background thread follows the lake. Each tick it (optionally) runs the
land + materialize step itself (`embedded_pipeline`), asks the source for the
changes after the pinned cut (the change data feed), embeds and indexes the
memory versions that appeared, then swaps the snapshot reference. Vectors of
versions that left the snapshot are deleted only once no request still reads
the older snapshot, so a request never misses a vector its snapshot holds.

On start the index is reconciled with the snapshot (rows missing are added,
rows not in it are deleted): the index is derived and repairs itself after a
crash. `rebuild_index` drops it and fills it from the snapshot.
"""

from __future__ import annotations

__all__ = ["SnapshotKeeper", "KeeperStats"]

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from memlake.errors import ConsistencyTimeoutError, LeaseHeldError, MemlakeError, SnapshotUnavailableError
from memlake.model import utcnow
from serving.embeddings import Embedder
from serving.snapshot import ContentOpener, CubeShard, ServingSnapshot, SnapshotSource, index_key
from serving.vector_index import IndexedMemory, IndexKey, VectorIndex

log = logging.getLogger(__name__)

_EMBED_CHUNK = 1024


@dataclass
class KeeperStats:
    """What the metrics report about the keeper."""

    lake_head: int = -1
    advances: int = 0
    follow_errors: int = 0
    last_error: str | None = None
    indexed_rows_written: int = 0
    indexed_rows_deleted: int = 0
    pending_deletes: int = 0
    unflushed_rows: int = 0
    last_advance_s: float = 0.0
    pipeline_runs: int = 0
    writer_elsewhere: str | None = None  # the lease holder the embedded pipeline leaves the lake to


class SnapshotKeeper:
    def __init__(
        self,
        source: SnapshotSource,
        index: VectorIndex,
        embedder: Embedder,
        *,
        opener: ContentOpener | None = None,
        follow_interval_s: float = 0.25,
        flush_rows: int = 2000,
        flush_idle_s: float = 5.0,
        pipeline_step: Callable[[], object] | None = None,
        pipeline_due: Callable[[ServingSnapshot], bool] | None = None,
    ) -> None:
        self._source = source
        self._index = index
        self._embedder = embedder
        self._opener = opener
        self._interval = follow_interval_s
        self._flush_rows = flush_rows
        self._flush_idle_s = flush_idle_s
        self._pipeline_step = pipeline_step
        self._pipeline_due = pipeline_due
        self._snapshot: ServingSnapshot | None = None
        self._swap = threading.Condition()
        self._advance_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._retired: list[tuple[ServingSnapshot, set[IndexKey]]] = []
        self._last_write = 0.0
        self.stats = KeeperStats()

    # --- reading --------------------------------------------------------------------

    @property
    def index(self) -> VectorIndex:
        return self._index

    @property
    def ready(self) -> bool:
        return self._snapshot is not None

    def current(self) -> ServingSnapshot:
        snapshot = self._snapshot
        if snapshot is None:
            raise SnapshotUnavailableError("the serving snapshot is still loading")
        return snapshot

    @contextlib.contextmanager
    def lease(self) -> Iterator[ServingSnapshot]:
        """The current snapshot, held for the duration of a request."""
        snapshot = self.current()
        snapshot.acquire()
        try:
            yield snapshot
        finally:
            snapshot.release()

    def wait_for(self, positions: Iterable[tuple[int, int]], *, timeout_s: float) -> ServingSnapshot:
        """Block until the snapshot covers every (partition, offset), or raise after `timeout_s`."""
        wanted = list(positions)
        deadline = time.monotonic() + timeout_s
        started = time.monotonic()
        self._wake.set()
        with self._swap:
            while True:
                snapshot = self.current()
                missing = [(p, o) for p, o in wanted if not snapshot.covers(p, o)]
                if not missing:
                    return snapshot
                left = deadline - time.monotonic()
                if left <= 0:
                    partition, offset = missing[0]
                    raise ConsistencyTimeoutError(
                        partition=partition,
                        offset=offset,
                        waited_s=time.monotonic() - started,
                        snapshot_version=snapshot.version,
                    )
                self._wake.set()
                self._swap.wait(timeout=min(left, 0.05))

    # --- lifecycle ------------------------------------------------------------------

    def start(self, *, follow: bool = True) -> None:
        """Load the snapshot, reconcile the index with it, and follow the lake."""
        self._index.ensure()
        # Load the embedding model now: the first write to index or query to embed must not
        # pay for it (measured: 20-30 s on a busy 2-core host).
        self._embedder.embed_query("memlake warm-up")
        try:
            self._run_pipeline()
        except (MemlakeError, RuntimeError) as e:
            # Serve what the lake already holds; the follow loop retries the pipeline.
            self.stats.follow_errors += 1
            self.stats.last_error = f"pipeline: {e}"
            log.warning("embedded land/materialize failed at start: %s", e)
        self._load()
        if follow:
            self._thread = threading.Thread(target=self._follow, name="memlake-snapshot", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with contextlib.suppress(MemlakeError):
            self._drain_retired(force=True)
            self._flush_if_due(force=True)

    def rebuild_index(self) -> int:
        """Drop the vector index and fill it from the pinned snapshot; returns the rows written."""
        with self._advance_lock:
            snapshot = self.current() if self._snapshot is not None else self._load_unlocked()
            self._index.drop()
            self._index.ensure()
            written = self._index_keys(snapshot, snapshot.searchable_keys())
            self._index.flush()
            self.stats.unflushed_rows = 0
            return written

    def _run_pipeline(self) -> None:
        if self._pipeline_step is None:
            return
        # Starting a batch job costs seconds; only start one when the log holds events
        # the snapshot does not reflect yet.
        snapshot = self._snapshot
        if snapshot is not None and self._pipeline_due is not None and not self._pipeline_due(snapshot):
            return
        try:
            self._pipeline_step()
        except LeaseHeldError as e:
            # Another process (`memlake materialize --follow`) is the lake's writer and keeps
            # it current: nothing for this one to do, and no error to count every round.
            if self.stats.writer_elsewhere != e.holder:
                log.warning("embedded land/materialize left to the lake's writer: %s", e)
                self.stats.writer_elsewhere = e.holder
            return
        self.stats.writer_elsewhere = None
        self.stats.pipeline_runs += 1

    def _load(self) -> None:
        with self._advance_lock:
            # Published only once the index holds its vectors: ready means searchable.
            snapshot = self._load_unlocked(publish=False)
            present = self._index.row_keys()
            expected = snapshot.searchable_keys()
            self._index_keys(snapshot, expected - present)
            stale = present - expected
            if stale:
                self._index.delete(stale)
                self.stats.indexed_rows_deleted += len(stale)
            self._index.flush()
            self.stats.unflushed_rows = 0
            self._publish(snapshot)

    def _load_unlocked(self, *, publish: bool = True) -> ServingSnapshot:
        cut = self._source.load()
        snapshot = ServingSnapshot.build(
            cut, covered=self._source.covered_offsets(cut.watermark), opener=self._opener, now=utcnow()
        )
        if publish:
            self._publish(snapshot)
        self.stats.lake_head = cut.watermark
        return snapshot

    def _publish(self, snapshot: ServingSnapshot) -> None:
        with self._swap:
            self._snapshot = snapshot
            self._swap.notify_all()

    # --- following ------------------------------------------------------------------

    def _follow(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self._interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._run_pipeline()
            except (MemlakeError, RuntimeError) as e:
                # Beam re-raises a failed step as RuntimeError. Every commit carries its
                # transaction id, so the next run simply retries what this one did not finish.
                self.stats.follow_errors += 1
                self.stats.last_error = f"pipeline: {e}"
                log.warning("embedded land/materialize failed, will retry: %s", e)
            try:
                self.advance()
                self._drain_retired()
                self._flush_if_due()
            except MemlakeError as e:
                # The lake or the index is unavailable for now: serve the pinned snapshot and retry.
                self.stats.follow_errors += 1
                self.stats.last_error = str(e)
                log.warning("snapshot follow failed: %s", e)
                self._stop.wait(timeout=min(5.0, self._interval * 4))

    def advance(self) -> bool:
        """Move to the newest consistent cut of the lake; returns whether the snapshot changed."""
        with self._advance_lock:
            old = self.current()
            started = time.monotonic()
            changes = self._source.changes(watermark=old.version, table_versions=old.table_versions)
            if changes is None:
                self.stats.lake_head = max(self.stats.lake_head, old.version)
                return False
            # Known before the work starts, so the index lag shows while a big batch is embedded.
            self.stats.lake_head = changes.watermark
            new = ServingSnapshot.build(
                changes,
                covered=self._source.covered_offsets(changes.watermark),
                opener=self._opener,
                now=utcnow(),
                previous=old,
            )
            added, removed = _key_changes(old, new)
            self._index_keys(new, added)
            self._publish(new)
            if removed:
                self._retired.append((old, removed))
                self.stats.pending_deletes += len(removed)
            self.stats.advances += 1
            self.stats.last_advance_s = time.monotonic() - started
            return True

    def _index_keys(self, snapshot: ServingSnapshot, keys: set[IndexKey]) -> int:
        if not keys:
            return 0
        ordered = sorted(keys)
        written = 0
        for start in range(0, len(ordered), _EMBED_CHUNK):
            chunk = ordered[start : start + _EMBED_CHUNK]
            shards = [snapshot.shards[k.cube_id] for k in chunk]
            texts = [shard.texts[k.memory_id] for shard, k in zip(shards, chunk, strict=True)]
            vectors = self._embedder.embed(texts)
            rows = []
            for shard, key, vector in zip(shards, chunk, vectors, strict=True):
                memory = shard.memories[key.memory_id]
                rows.append(
                    IndexedMemory(
                        key=key,
                        kind=memory.kind.value,
                        status=memory.status.value,
                        memory_type=memory.header.memory_type,
                        tags=memory.header.tags,
                        created_at_ms=int(memory.header.created_at.timestamp() * 1000),
                        vector=vector,
                    )
                )
            self._index.upsert(rows)
            written += len(rows)
        self.stats.indexed_rows_written += written
        self.stats.unflushed_rows += written
        self._last_write = time.monotonic()
        if self.stats.unflushed_rows >= self._flush_rows:
            self._flush_if_due(force=True)
        return written

    def _drain_retired(self, *, force: bool = False) -> None:
        keep: list[tuple[ServingSnapshot, set[IndexKey]]] = []
        current = self._snapshot
        for snapshot, keys in self._retired:
            if force or (snapshot is not current and snapshot.leases == 0):
                # A key may have come back (a rollback restores an old version): keep it then.
                gone = {k for k in keys if current is None or current.live(k) is None}
                if gone:
                    self._index.delete(gone)
                self.stats.indexed_rows_deleted += len(gone)
                self.stats.pending_deletes -= len(keys)
                self._last_write = time.monotonic()
            else:
                keep.append((snapshot, keys))
        self._retired = keep

    def _flush_if_due(self, *, force: bool = False) -> None:
        if self.stats.unflushed_rows == 0 and not force:
            return
        idle = time.monotonic() - self._last_write >= self._flush_idle_s
        if force or self.stats.unflushed_rows >= self._flush_rows or idle:
            self._index.flush()
            self.stats.unflushed_rows = 0


def _changed_shards(old: ServingSnapshot, new: ServingSnapshot) -> list[str]:
    return [
        cube_id
        for cube_id in set(old.shards) | set(new.shards)
        if old.shards.get(cube_id) is not new.shards.get(cube_id)
    ]


def _shard_keys(shard: CubeShard | None) -> set[IndexKey]:
    if shard is None:
        return set()
    return {index_key(shard.memories[mid]) for mid in shard.texts}


def _key_changes(old: ServingSnapshot, new: ServingSnapshot) -> tuple[set[IndexKey], set[IndexKey]]:
    added: set[IndexKey] = set()
    removed: set[IndexKey] = set()
    for cube_id in _changed_shards(old, new):
        before = _shard_keys(old.shards.get(cube_id))
        after = _shard_keys(new.shards.get(cube_id))
        added |= after - before
        removed |= before - after
    return added, removed
