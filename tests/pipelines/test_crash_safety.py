"""Crash safety: `memlake materialize --follow` killed with SIGKILL at random points while
20,000 events stream in; after a restart every table equals what a rebuild produces."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest

from benchmarks._lake_workload import generate, invalid_records
from lake.scan import scan
from lake.schemas import EVENTS as EVENTS_TABLE
from lake.tables import Lake
from memlake.settings import Settings
from pipelines.follow import run_jobs
from pipelines.rebuild import run_rebuild
from tests.pipelines.cli_env import child_environment, start_materialize
from tests.pipelines.helpers import expected_memories, lake_memories, produce, pure_fold

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 20_000
MIN_KILLS = 8


def _environment(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return child_environment(
        settings,
        tmp_path,
        MEMLAKE_PIPELINES_BATCH_MAX_EVENTS="2000",
        MEMLAKE_PIPELINES_FOLLOW_INTERVAL_S="0.2",
    )


def test_sigkill_at_random_points_loses_nothing_and_applies_nothing_twice(
    settings: Settings, tmp_path: Path
) -> None:
    events = generate(EVENTS, cubes=60, seed=21)
    bad = invalid_records(10)

    def stream() -> None:
        for i in range(0, EVENTS, 1000):
            produce(
                settings.kafka,
                events[i : i + 1000],
                raw=bad[i // 2000 : i // 2000 + 1] if i % 2000 == 0 else (),
            )
            time.sleep(1.0)

    producer = threading.Thread(target=stream)
    producer.start()
    env, log, rng = _environment(settings, tmp_path), tmp_path / "follow.log", random.Random(1234)
    lake = Lake(settings.lake)
    lake.ensure_all()  # created before the first child, so no two processes race to create them
    kills = 0
    while producer.is_alive() or kills < MIN_KILLS:
        before = (lake.version("events"), lake.watermark("memories"))
        process = start_materialize(env, log, "--follow")
        # Kill at a random point after the run has committed something, however loaded the
        # machine is: during a materialize, between two tables' commits, in the next land.
        deadline = time.monotonic() + 30
        while (lake.version("events"), lake.watermark("memories")) == before and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(rng.uniform(0.0, 6.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
    producer.join()
    assert kills >= MIN_KILLS
    assert lake.version("events") > 0  # the killed runs made progress before dying

    run_jobs(settings)  # the restart: catch up whatever the crashes left

    landed = scan(lake.table("events"), EVENTS_TABLE, columns=["partition", "offset"])
    assert landed.num_rows == EVENTS  # nothing lost, nothing twice
    keys = pc.add(pc.multiply(landed.column("partition").cast("int64"), 10**9), landed.column("offset"))
    assert len(pc.unique(keys)) == EVENTS
    assert lake_memories(lake) == expected_memories(pure_fold(events))
    result = run_rebuild(settings, verify=True)
    assert result.equal, [d for d in result.differences if not d.equal]


def test_sigterm_stops_follow_mode_cleanly(settings: Settings, tmp_path: Path) -> None:
    produce(settings.kafka, generate(300, cubes=3, seed=2))
    log = tmp_path / "follow.log"
    process = start_materialize(_environment(settings, tmp_path), log, "--follow")
    deadline = time.monotonic() + 120
    while "batch 1" not in log.read_text() and time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, log.read_text()
    output = log.read_text()
    assert "SIGTERM: stopping after this batch" in output
    assert "done:" in output
    lake = Lake(settings.lake)
    assert lake.watermark("memories") == lake.version("events")
