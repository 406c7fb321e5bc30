"""rebuild: replay the log into fresh tables and compare them with the live ones.

The live derived tables are read at their newest consistent cut (events
version `w`); the log is replayed from its start up to the offsets the live
events table held at `w`, through the same land and materialize graphs, into
a fresh lake. Every table must then be equal, row for row: that is what
"exactly once" means, checked.
"""

from __future__ import annotations

__all__ = ["RebuildResult", "run_rebuild"]

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lake.compare import TableDifference, compare_table
from lake.removal import remove_lake
from lake.schemas import DERIVED_TABLES, TABLES
from lake.snapshot import find_cut
from lake.tables import Lake
from memlake.errors import LakeError
from memlake.settings import Settings
from pipelines.heap import release_freed
from pipelines.job_process import job_process
from pipelines.land import run_land
from pipelines.materialize import run_materialize
from pipelines.state_cache import drop_state_cache
from streams.reader import OffsetRange, end_offsets, start_offsets


@dataclass(frozen=True)
class RebuildResult:
    root: str
    watermark: int  # the live events version compared at
    events: int
    seconds: float
    differences: tuple[TableDifference, ...] = field(default=())
    # The rebuilt tables are still there: asked for, or on an object store `lake.removal`
    # cannot delete from (anything but a local folder and s3://).
    kept: bool = False

    @property
    def equal(self) -> bool:
        return all(d.equal for d in self.differences)


def _ranges(settings: Settings, upto: dict[int, int]) -> list[OffsetRange]:
    topic = settings.kafka.events_topic
    first = start_offsets(settings.kafka, topic)
    step = max(1, settings.pipelines.batch_max_events // max(1, len(upto)))
    spans: list[tuple[int, int, OffsetRange]] = []
    for partition, last in sorted(upto.items()):
        for n, start in enumerate(range(first.get(partition, 0), last + 1, step)):
            spans.append((n, partition, OffsetRange(topic, partition, start, min(last + 1, start + step))))
    # Batch n holds the n-th slice of every partition.
    return [span for _, _, span in sorted(spans, key=lambda item: item[:2])]


def _place(location: str) -> str:
    """A location to compare: a URI as it is, a local path made absolute."""
    return location.rstrip("/") if "://" in location else str(Path(location).resolve())


def _refuse_live_tables(live: Lake, into: str) -> None:
    """Tables rebuilt inside a live table's folder would be files that table does not
    track: mixed with its own, and deleted by its next vacuum."""
    place = _place(into)
    if place == _place(live.root):
        raise LakeError("events", f"{into} is the live lake: rebuild into another place")
    for name in TABLES:
        table = _place(live.uri(name))
        if place == table or place.startswith(table + "/"):
            raise LakeError(
                name, f"{into} is inside the live table {live.uri(name)}: rebuild outside the live tables"
            )


def run_rebuild(
    settings: Settings,
    *,
    into: str | None = None,
    verify: bool = True,
    keep: bool = False,
    beam_args: Sequence[str] = (),
    progress: Callable[[str], None] = lambda _: None,
) -> RebuildResult:
    """Rebuild every table from the log into `into` (default: a folder under the lake root)."""
    with job_process():
        return _rebuild(settings, into=into, verify=verify, keep=keep, beam_args=beam_args, progress=progress)


def _rebuild(
    settings: Settings,
    *,
    into: str | None,
    verify: bool,
    keep: bool,
    beam_args: Sequence[str],
    progress: Callable[[str], None],
) -> RebuildResult:
    began = time.monotonic()
    live = Lake(settings.lake)
    if into is not None:
        # The rebuild writes as nobody else may (`merge_per_bucket`), and never resumes.
        place = Lake(settings.lake.model_copy(update={"root": into}))
        held = [name for name in TABLES if place.exists(name)]
        if held:
            raise LakeError(held[0], f"{into} holds lake tables already: rebuild into an empty place")
        _refuse_live_tables(live, into)
    live.ensure_all()
    cut = find_cut(live, DERIVED_TABLES)
    topic = settings.kafka.events_topic
    upto: dict[int, int] = {}
    if cut.watermark >= 0:
        partitions = sorted(end_offsets(settings.kafka, topic))
        upto = live.land_offsets(topic, partitions, dt=live.table("events", version=cut.watermark))
    root = into or f"{live.root}/_rebuild/{uuid.uuid4().hex[:12]}"
    # Each batch of a rebuild spans every cube, so kept states seldom serve the next one: in
    # the 1M-event rebuild (5,000 cubes) the cache held about 9% of them, for 0.7 GB.
    pipelines = settings.pipelines.model_copy(
        update={"state_cache_versions": settings.pipelines.rebuild_state_cache_versions}
    )
    fresh = settings.model_copy(
        update={"lake": settings.lake.model_copy(update={"root": root}), "pipelines": pipelines}
    )
    target = Lake(fresh.lake)
    target.ensure_all()
    ranges = _ranges(settings, upto)
    per_batch = max(1, len(upto))
    events = 0
    # Each batch is materialized right after it lands: in one process, materialize takes
    # the events land parsed (pipelines.landed_cache) instead of parsing them again, and
    # that cache never holds more than a batch.
    for i in range(0, len(ranges), per_batch):
        landed = run_land(
            fresh, ranges=ranges[i : i + per_batch], beam_args=beam_args, send_dead_letters=False
        )
        events += landed.events
        progress(f"rebuild: landed {events} events")
        while True:
            # Nobody reads the fresh lake before it is done, and a failed rebuild starts
            # again from nothing: its upserts can MERGE one bucket at a time, a commit each,
            # holding one bucket's files instead of the whole table's.
            done = run_materialize(fresh, beam_args=beam_args, merge_per_bucket=True)
            if done.plan is None:
                break
            # What a batch leaves in reference cycles waits for a full collection, which the
            # batch thresholds (pipelines.heap) make rare: at 150,000 events 2.4 million such
            # objects had piled up over three batches (mostly rejections' tracebacks holding
            # the fold's frames, now cut in memlake.fold). Collected each batch, and what the
            # allocators then hold free handed back.
            release_freed()
            progress(f"rebuild: materialized up to events version {done.watermark}")
    # The fresh lake's kept cube states (up to `rebuild_state_cache_versions`) serve no later
    # batch: freed before the comparison takes its own memory.
    drop_state_cache(root)
    release_freed()
    differences: list[TableDifference] = []
    if verify:
        for name in TABLES:
            live_version = cut.versions.get(name) if name != "events" else cut.watermark
            if name not in DERIVED_TABLES and cut.watermark < 0:
                live_version = None
            differences.append(compare_table(live, live_version, target, target.version(name), name))
            progress(f"rebuild: {name} {'equal' if differences[-1].equal else 'DIFFERS'}")
    kept = keep or into is not None or not remove_lake(target)
    return RebuildResult(root, cut.watermark, events, time.monotonic() - began, tuple(differences), kept=kept)
