"""Rebuild: replay the whole log into fresh tables and verify them, its time and peak memory.

The live lake is materialized first, in this process; then `memlake rebuild
--verify` runs in its own, under `benchmarks._own_peak`, so that the peak
reported is the rebuild's own and not this process's (see there). Aim for
1,000,000 events ("full"): under 4 GiB.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._lake_bench import bench_settings, produce_workload, subprocess_env
from benchmarks._own_peak import read_peak_gib
from pipelines.follow import run_jobs

_PROFILES = {"tiny": (2_000, 20), "quick": (30_000, 150), "full": (1_000_000, 5_000)}


def run(profile: str, out_dir: Path) -> dict[str, Any]:
    events, cubes = _PROFILES[profile]
    settings = bench_settings(out_dir)
    produce_workload(settings, events, cubes=cubes)
    began = time.perf_counter()
    run_jobs(settings)
    live_s = time.perf_counter() - began

    # This process's peak so far: the live materialize's when this benchmark runs alone
    # (`--only lake_rebuild`), and what this benchmark reported as the rebuild's before.
    runner_peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024  # KiB on Linux

    log, peak_file = out_dir / "rebuild.log", out_dir / "rebuild.peak"
    began = time.perf_counter()
    with log.open("w") as sink:
        # Under `_own_peak`: the child's ru_maxrss would start at this process's peak.
        rebuild = ["memlake", "rebuild", "--verify"]
        command = [sys.executable, "-m", "benchmarks._own_peak", str(peak_file), *rebuild]
        child = subprocess.run(
            command, check=False, env=subprocess_env(settings), stdout=sink, stderr=subprocess.STDOUT
        )
    rebuild_s = time.perf_counter() - began
    if child.returncode != 0:
        raise RuntimeError(f"rebuild --verify failed ({child.returncode}): {log.read_text()[-4000:]}")
    peak_gib = read_peak_gib(peak_file)
    return {
        "summary": f"{events:,} events rebuilt and verified in {rebuild_s:.1f} s, peak {peak_gib:.2f} GiB",
        "events": events,
        "rebuild_s": round(rebuild_s, 2),
        "live_materialize_s": round(live_s, 2),
        "rebuild_events_per_s": round(events / rebuild_s, 1),
        "peak_rss_gib": round(peak_gib, 3),
        "runner_peak_rss_gib": round(runner_peak_gib, 3),
        "ratio_rebuild_to_live": round(rebuild_s / live_s, 3),
        "aim": {"peak_rss_gib": 4.0},
        "verified_equal": True,
    }
