"""Freshness in follow mode: events produced at 1,000/s, time from produce to visible in `memories`.

`memlake materialize --follow` runs as its own process (as in production);
this process produces `memory.added` events at a steady rate, their memories
named as the SDK names them (`m-` and a UUIDv7), and, every
100 ms, reads what the newest `memories` snapshot added (its change data
feed). Aim: p95 under 2 s.

The full profile measures on a lake that holds a history first: 200,000 workload
events on 2,000 other cubes, materialized, compacted and checkpointed as a
follower's maintenance would leave them. A batch's `MERGE` into `memories`
rewrites every file holding a memory it updates, so what a batch costs grows
with the lake (docs/lake.md, "Known limits").
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks._lake_bench import bench_settings, percentile, produce_workload, subprocess_env
from lake.maintenance import checkpoint, compact
from lake.snapshot import changes, open_snapshot
from lake.tables import Lake
from memlake.errors import LakeError
from memlake.events import CubeCreated, MemoryAdded, new_event, serialize_event
from memlake.ids import uuid7
from memlake.model import Actor, ActorKind
from memlake.settings import Settings
from pipelines.follow import run_jobs
from pipelines.state_cache import drop_state_cache
from streams.producer import EventProducer

_PROFILES = {"tiny": (200, 3.0), "quick": (1_000, 30.0), "full": (1_000, 120.0)}
# The history the lake holds before the measured stream: workload events, and their cubes.
_HISTORY = {"tiny": (0, 0), "quick": (0, 0), "full": (200_000, 2_000)}
_OWNER = Actor(kind=ActorKind.USER, id="bench")


def _wait_until_following(
    lake: Lake, follower: subprocess.Popen[bytes], *, past: int, timeout_s: float = 180.0
) -> None:
    """Until the follower has materialized its first batch (the cubes; `past`: the watermark
    before it): its start-up (imports, building and translating the graph) is not what is
    measured, and on a loaded machine it takes longer than any fixed pause."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if follower.poll() is not None:
            raise RuntimeError(f"the follower exited with status {follower.returncode}")
        try:
            if lake.exists("cubes") and lake.watermark("cubes") > past:
                return
        except LakeError:  # being created by the follower
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the follower did not materialize its first batch within {timeout_s:.0f} s")


def _fill(settings: Settings, events: int, cubes: int) -> dict[str, Any]:
    """Land and materialize a history of `events` on `cubes` cubes, then compact and checkpoint."""
    began = time.perf_counter()
    produce_workload(settings, events, cubes=cubes, seed=11)
    run_jobs(settings)
    drop_state_cache(settings.lake.root)  # the follower is another process: nothing here is reused
    lake = Lake(settings.lake)
    compact(lake)
    checkpoint(lake)
    return {
        "events": events,
        "cubes": cubes,
        "memories": lake.table("memories").to_pyarrow_dataset().count_rows(),
        "memory_versions": lake.table("memory_versions").to_pyarrow_dataset().count_rows(),
        "seconds": round(time.perf_counter() - began, 1),
    }


def run(profile: str, out_dir: Path) -> dict[str, Any]:
    rate, seconds = _PROFILES[profile]
    settings = bench_settings(out_dir, batch_max_events=20_000)
    settings = settings.model_copy(
        update={"pipelines": settings.pipelines.model_copy(update={"follow_interval_s": 0.1})}
    )
    history_events, history_cubes = _HISTORY[profile]
    history = _fill(settings, history_events, history_cubes) if history_events else None
    lake = Lake(settings.lake)
    past = lake.watermark("cubes") if history else 0
    cubes = [f"fresh-{i}" for i in range(20)]
    produced: dict[str, float] = {}
    seen: dict[str, float] = {}
    with EventProducer(settings.kafka) as producer:
        producer.send([new_event(CubeCreated, cube_id=c, actor=_OWNER, payload={"name": c}) for c in cubes])
    follower = subprocess.Popen(
        [sys.executable, "-m", "memlake", "materialize", "--follow"],
        env=subprocess_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stop = threading.Event()

    def poll() -> None:
        # Only what each new snapshot adds is read (the change data feed of `memories` up
        # to the snapshot's version): re-reading the whole table every 100 ms would take
        # the follower's CPU on a small machine and measure the poller, not memlake. For
        # the same reason the snapshot (the head of every table) is opened only while
        # `memories` has a version the poller has not seen through a snapshot yet.
        read_to = 0
        while not stop.is_set():
            try:
                if lake.version("memories") <= read_to:
                    time.sleep(0.1)
                    continue
                version = open_snapshot(lake).versions["memories"]
                fresh = (
                    changes(lake, "memories", after_version=read_to, to_version=version)
                    if version is not None and version > read_to
                    else None
                )
            except LakeError:  # a table being created at start-up
                time.sleep(0.1)
                continue
            now = time.monotonic()
            if fresh is not None and fresh.num_rows:
                for memory_id in fresh.column("memory_id").to_pylist():
                    seen.setdefault(memory_id, now)
            read_to = version if version is not None else read_to
            time.sleep(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    try:
        _wait_until_following(lake, follower, past=past)
        poller.start()
        total = int(rate * seconds)
        began = time.monotonic()
        with EventProducer(settings.kafka) as producer:
            for i in range(total):
                due = began + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                memory_id = f"m-{uuid7().hex}"  # as the SDK names a memory (streams/sdk.py)
                cube = cubes[i % len(cubes)]
                event = new_event(
                    MemoryAdded, cube_id=cube, actor=_OWNER, memory_id=memory_id,
                    payload={"content": {"text": f"fact number {i}"}},
                )  # fmt: skip
                producer.send_raw(cube.encode(), serialize_event(event))
                produced[memory_id] = time.monotonic()
            producer.flush()
        deadline = time.monotonic() + 60
        while len(seen.keys() & produced.keys()) < total and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        follower.send_signal(signal.SIGTERM)
        follower.wait(timeout=120)
    latencies = [seen[m] - produced[m] for m in produced if m in seen]
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    on = f" onto a lake of {history['events']:,} events ({history['memories']:,} memories)" if history else ""
    return {
        "summary": f"{rate}/s for {seconds:.0f} s{on}: p50 {p50:.2f} s, p95 {p95:.2f} s produce -> visible",
        "history": history or {"events": 0},
        "rate_per_s": rate,
        "events": len(produced),
        "visible": len(latencies),
        "latency_s": {"p50": round(p50, 3), "p95": round(p95, 3), "max": round(max(latencies), 3)},
        "aim": {"p95_s": 2.0},
    }
