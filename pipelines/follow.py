"""`memlake materialize [--follow]`: land then materialize, batch after batch.

One-shot mode runs until both jobs are caught up; follow mode keeps going,
a micro-batch at a time, and stops cleanly (between two batches, never inside
a commit) when asked to, e.g. on SIGTERM. Every `maintenance_every` batches
it compacts and checkpoints the tables, so that many small commits do not
slow them down.
"""

from __future__ import annotations

__all__ = ["Progress", "run_jobs"]

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lake.maintenance import checkpoint, compact
from lake.tables import Lake
from memlake.settings import Settings
from pipelines.land import run_land
from pipelines.materialize import run_materialize


@dataclass
class Progress:
    batches: int = 0
    landed: int = 0
    dead_letters: int = 0
    materialized: int = 0
    applied: int = 0
    rejected: int = 0
    duplicates: int = 0
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
        )


def run_jobs(
    settings: Settings,
    *,
    follow: bool = False,
    stop: threading.Event | None = None,
    beam_args: Sequence[str] = (),
    report: Callable[[Progress], None] = lambda _: None,
) -> Progress:
    """Land and materialize until caught up (or, following, until `stop` is set)."""
    stop = stop or threading.Event()
    progress = Progress(started=time.monotonic())
    lake = Lake(settings.lake)
    every = settings.pipelines.maintenance_every
    while not stop.is_set():
        landed = run_land(settings, beam_args=beam_args)
        if stop.is_set():
            break
        done = run_materialize(settings, beam_args=beam_args)
        worked = bool(landed.ranges) or done.plan is not None
        if worked:
            progress.batches += 1
            progress.landed += landed.events
            progress.dead_letters += landed.dead_letters
            progress.materialized += done.events
            progress.applied += done.applied
            progress.rejected += done.rejected
            progress.duplicates += done.duplicates
            progress.events_version = landed.events_version
            progress.watermark = done.watermark if done.watermark is not None else progress.watermark
            report(progress)
            if every and progress.batches % every == 0:
                compact(lake)
                checkpoint(lake)
            continue
        if not follow:
            break
        stop.wait(settings.pipelines.follow_interval_s)
    return progress
