"""Rebuild: replay the whole log into fresh tables and verify them, its time and peak memory.

The live lake is materialized first; then `memlake rebuild --verify` runs in
its own process so that its peak resident memory is its own. Aim for
1,000,000 events ("full"): under 4 GiB.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._lake_bench import bench_settings, produce_workload, subprocess_env
from pipelines.follow import run_jobs

_PROFILES = {"tiny": (2_000, 20), "quick": (30_000, 150), "full": (1_000_000, 5_000)}


def run(profile: str, out_dir: Path) -> dict[str, Any]:
    events, cubes = _PROFILES[profile]
    settings = bench_settings(out_dir)
    produce_workload(settings, events, cubes=cubes)
    began = time.perf_counter()
    run_jobs(settings)
    live_s = time.perf_counter() - began

    log = out_dir / "rebuild.log"
    began = time.perf_counter()
    with log.open("w") as sink:
        child = subprocess.Popen(
            [sys.executable, "-m", "memlake", "rebuild", "--verify"],
            env=subprocess_env(settings),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        # wait4 gives this child's own peak; RUSAGE_CHILDREN is the largest of every child
        # this process has waited for.
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    rebuild_s = time.perf_counter() - began
    if child.returncode != 0:
        raise RuntimeError(f"rebuild --verify failed ({child.returncode}): {log.read_text()[-4000:]}")
    peak_gib = usage.ru_maxrss / 1024 / 1024  # KiB on Linux
    return {
        "summary": f"{events:,} events rebuilt and verified in {rebuild_s:.1f} s, peak {peak_gib:.2f} GiB",
        "events": events,
        "rebuild_s": round(rebuild_s, 2),
        "live_materialize_s": round(live_s, 2),
        "rebuild_events_per_s": round(events / rebuild_s, 1),
        "peak_rss_gib": round(peak_gib, 3),
        "ratio_rebuild_to_live": round(rebuild_s / live_s, 3),
        "aim": {"peak_rss_gib": 4.0},
        "verified_equal": True,
    }
