"""`memlake materialize [--follow]`: land then materialize, batch after batch.

One-shot mode runs until both jobs are caught up; follow mode keeps going,
a micro-batch at a time, and stops cleanly (between two batches, never inside
a commit) when asked to, e.g. on SIGTERM. It waits out Kafka or the lake's
store being away (pipelines.outage), then goes on from where the lake says. Only the holder of
the writer lease runs batches (pipelines.writer_lease): a second follower
stands by until the first stops or dies, and a one-shot run refuses. Two
writers anyway (the lease off, or outlived) cost batches, not correctness: the
commit that comes second conflicts with the first (the same transaction id, or
the files it rewrote), lands nothing, and the batch is planned again from the
lake as it is then. Every `maintenance_every` batches it compacts and
checkpoints the tables, so that many small commits do not slow them down.

A batch is one graph, `Land` then `Materialize` (started by land's commit),
each planning its work when it runs; the graph is built and translated once
and replayed batch after batch (`pipelines.prepared`): under the DirectRunner
that is what keeps a micro-batch well under a second.
"""

from __future__ import annotations

__all__ = ["Progress", "run_jobs"]

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter

from lake.lease import holder_id
from lake.maintenance import checkpoint, compact
from lake.schemas import DERIVED_TABLES
from lake.tables import DEAD_LETTERS_KEY, EVENTS_KEY, WRITER_KEY, Lake
from memlake.errors import (
    ConcurrentWriteError,
    InfrastructureError,
    LakeError,
    LeaseHeldError,
    StoreUnavailableError,
)
from memlake.settings import Settings
from pipelines.job_process import job_process
from pipelines.land import Land, plan_land
from pipelines.materialize import Materialize
from pipelines.options import metric, pipeline_options
from pipelines.outage import Outage, is_outage
from pipelines.prepared import PreparedPipeline
from pipelines.writer_lease import WRITER_LEASE, WriterLease

_log = logging.getLogger(__name__)
_LAND = "memlake.land"
_MATERIALIZE = "memlake.materialize"


@dataclass
class Progress:
    batches: int = 0
    landed: int = 0
    dead_letters: int = 0
    materialized: int = 0
    applied: int = 0
    rejected: int = 0
    duplicates: int = 0
    conflicts: int = 0  # batches another writer's commit came first in: planned again
    outages: int = 0  # times Kafka or the lake's store was away (follow mode waited for it)
    events_version: int = -1
    watermark: int = -1
    started: float = 0.0

    def line(self) -> str:
        rate = self.materialized / max(1e-9, time.monotonic() - self.started)
        return (
            f"batch {self.batches}: landed {self.landed} (dead letters {self.dead_letters}), "
            f"materialized {self.materialized} (applied {self.applied}, rejected {self.rejected}, "
            f"duplicates {self.duplicates}); events v{self.events_version}, "
            f"derived at v{self.watermark}; {rate:,.0f} events/s"
            + (f"; {self.conflicts} planned again after another writer's commit" if self.conflicts else "")
            + (f"; waited out {self.outages} outage(s) of Kafka or the lake's store" if self.outages else "")
        )


class LandThenMaterialize(beam.PTransform):  # type: ignore[type-arg]
    """One micro-batch: land the next offset ranges, then materialize the next events versions.
    `writer` names the run in land's commits."""

    def __init__(self, settings: Settings, *, writer: str | None = None) -> None:
        super().__init__()
        self._settings = settings
        self._writer = writer

    def expand(self, pbegin: Any) -> Any:
        # Land yields exactly one result per batch, once it has committed (or found
        # nothing to land): materialize plans after it.
        landed = pbegin | "Land" >> Land(self._settings, writer=self._writer)
        return landed | "Materialize" >> Materialize(self._settings)


def _watermark(result: Any) -> int | None:
    """The events version the batch's plan took the derived tables to (None: nothing planned)."""
    query = result.metrics().query(MetricsFilter().with_namespace(_MATERIALIZE).with_name("watermark"))
    found = [d.committed.max for d in query["distributions"] if d.committed and d.committed.count]
    return max(found) if found else None


def _has_work(settings: Settings, lake: Lake) -> bool:
    """Whether the topic has records not landed yet, or `events` versions not materialized."""
    if plan_land(settings, lake):
        return True
    return min(lake.watermarks(DERIVED_TABLES).values()) < lake.version("events")


def _landed_by(lake: Lake, writer: str, *, after: int, upto: int) -> tuple[int, int]:
    """Events and dead letters that `writer`'s land commits in events versions `after` + 1
    to `upto` hold.

    What a batch that lost a later commit to another writer landed all the same: its run
    raised, so Beam's counters of it are gone, but land's commit is in the log.
    """
    if upto <= after:
        return 0, 0
    log = lake.commit_log("events", limit=upto - after)
    if min(e["version"] for e in log) > after + 1:
        log = lake.commit_log("events")  # more commits came since `upto`: read them all
    ours = [e for e in log if after < e["version"] <= upto and e.get(WRITER_KEY) == writer]
    return sum(e.get(EVENTS_KEY, 0) for e in ours), sum(e.get(DEAD_LETTERS_KEY, 0) for e in ours)


def _count_landed(progress: Progress, lake: Lake, run: str, accounted: int) -> int:
    """Add what `run` landed past `accounted` to `progress`, from the log: a batch that failed
    after land's commit took Beam's counters with it. The events version counted up to (still
    `accounted` while the store does not answer: the log keeps it for a later count)."""
    try:
        newest = lake.version("events")
        landed, dead_letters = _landed_by(lake, run, after=accounted, upto=newest)
    except StoreUnavailableError:
        return accounted
    progress.landed += landed
    progress.dead_letters += dead_letters
    return newest


def _standby_look_s(settings: Settings) -> float:
    """How long a standby waits between two looks at the writer lease: a look opens the
    lease's log (about 20 ms of CPU here), so a twentieth of the lease, 3 s by default,
    not every `follow_interval_s`; a released lease is taken within that."""
    return max(settings.pipelines.follow_interval_s, settings.pipelines.writer_lease_s / 20)


def run_jobs(
    settings: Settings,
    *,
    follow: bool = False,
    stop: threading.Event | None = None,
    beam_args: Sequence[str] = (),
    report: Callable[[Progress], None] = lambda _: None,
) -> Progress:
    """Land and materialize until caught up (or, following, until `stop` is set)."""
    with job_process():
        return _run_jobs(
            settings, follow=follow, stop=stop or threading.Event(), beam_args=beam_args, report=report
        )


def _run_jobs(
    settings: Settings,
    *,
    follow: bool,
    stop: threading.Event,
    beam_args: Sequence[str],
    report: Callable[[Progress], None],
) -> Progress:
    lake = Lake(settings.lake)
    writer = (
        WriterLease(lake, seconds=settings.pipelines.writer_lease_s)
        if settings.pipelines.writer_lease_s
        else None
    )
    try:
        return _batches(settings, lake, writer, follow=follow, stop=stop, beam_args=beam_args, report=report)
    finally:
        if writer is not None:
            writer.release()


def _batches(
    settings: Settings,
    lake: Lake,
    writer: WriterLease | None,
    *,
    follow: bool,
    stop: threading.Event,
    beam_args: Sequence[str],
    report: Callable[[Progress], None],
) -> Progress:
    progress = Progress(started=time.monotonic())
    every = settings.pipelines.maintenance_every
    # This run's name in land's commits: the writer lease's holder, or an id of the same form.
    run = writer.holder if writer is not None else holder_id()
    batch = PreparedPipeline(
        lambda pipeline: pipeline | "Batch" >> LandThenMaterialize(settings, writer=run),
        pipeline_options(settings.pipelines, beam_args),
    )
    accounted = -1  # the events version up to which this run's landing is counted
    outage = Outage(settings.pipelines.follow_interval_s, settings.pipelines.outage_backoff_max_s)
    standing_by: list[str | None] = []  # the holders this process stood by for, in turn
    ensured = False
    while not stop.is_set():
        # Everything in a turn may meet Kafka or the store away, the lease's claim and the
        # batch's bookkeeping as much as the batch: a follower waits out an outage wherever.
        try:
            held = writer.claim() if writer is not None else None
            if held is not None:
                if not follow:
                    raise held
                if not standing_by or standing_by[-1] != held.holder:
                    _log.warning("standing by: %s", held)  # once per holder, not once a look
                    standing_by.append(held.holder)
                stop.wait(_standby_look_s(settings))
                continue
            if standing_by:
                _log.warning("took the lease %r: this process writes the lake now", WRITER_LEASE)
                standing_by.clear()
            if not ensured:
                # Only the writer creates missing tables: two processes creating one race.
                lake.ensure_all()
                accounted = lake.version("events")
                ensured = True
            # Checked before running the graph: an idle follower would otherwise pay a
            # whole batch's fixed cost (a second of CPU) every `follow_interval_s`.
            work = _has_work(settings, lake)
            if work:
                result = batch.run()
                newest, watermark = _landed_and_materialized(lake, result)
        except ConcurrentWriteError as e:
            # Nothing of the refused commit landed; what the batch committed before it is
            # repaired like a crash's. A moment's wait: the other writer is mid-batch.
            progress.conflicts += 1
            accounted = _count_landed(progress, lake, run, accounted)
            _log.warning("%s; planning the batch again", e)
            stop.wait(settings.pipelines.follow_interval_s)
            continue
        except InfrastructureError as e:
            if not follow or not is_outage(e):
                raise
            # What the failed batch committed is repaired by the next, like a crash's.
            if outage.began is None:
                progress.outages += 1
            accounted = _count_landed(progress, lake, run, accounted)
            stop.wait(outage.failed(e))
            continue
        outage.over()
        if not work:
            if not follow:
                break
            stop.wait(settings.pipelines.follow_interval_s)
            continue
        if metric(result, _LAND, "planned_records") > 0 or watermark is not None:
            progress.batches += 1
            progress.landed += metric(result, _LAND, "events")
            progress.dead_letters += metric(result, _LAND, "dead_letters")
            progress.materialized += metric(result, _MATERIALIZE, "events")
            progress.applied += metric(result, _MATERIALIZE, "applied")
            progress.rejected += metric(result, _MATERIALIZE, "rejected")
            progress.duplicates += metric(result, _MATERIALIZE, "duplicates")
            progress.events_version = accounted = newest
            progress.watermark = watermark if watermark is not None else progress.watermark
            report(progress)
            if every and progress.batches % every == 0:
                _maintain(lake, every)
            continue
        if not follow:
            break
        stop.wait(settings.pipelines.follow_interval_s)
    return progress


def _landed_and_materialized(lake: Lake, result: Any) -> tuple[int, int | None]:
    """After a batch: the events version now, and the one its plan took the derived tables to
    (None: nothing planned), checked against the tables. Read before the batch is counted,
    so that a store failing here leaves the counting to `_count_landed`, once."""
    watermark = _watermark(result)
    if watermark is not None:
        behind = {n: m for n, m in lake.watermarks(DERIVED_TABLES).items() if m < watermark}
        if behind:
            problem = f"tables still behind events version {watermark}: {behind}"
            raise LakeError(next(iter(behind)), problem)
    return lake.version("events"), watermark


def _maintain(lake: Lake, every: int) -> None:
    """Compact and checkpoint the tables. A compaction that another one holds the lake's
    lease for, or that a batch's commit overtook (another writer's), and what the store did
    not answer for, are left to the next round."""
    try:
        compact(lake)
    except (ConcurrentWriteError, LeaseHeldError, StoreUnavailableError) as e:
        _log.warning("%s; compacting again after %d more batches", e, every)
    try:
        checkpoint(lake)
    except StoreUnavailableError as e:
        _log.warning("%s; checkpointing again after %d more batches", e, every)
