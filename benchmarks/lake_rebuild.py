"""Rebuild: replay the whole log into fresh tables and verify them, its time and peak memory.

The live lake is materialized first by `memlake materialize`, then `memlake
rebuild --verify` folds the same log into fresh tables and compares them. Each
runs in its own process under `benchmarks._own_peak`, so that each peak
reported is that job's own and not this process's (see there). Aim for
1,000,000 events ("full"): the rebuild under 4 GiB.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._lake_bench import bench_settings, produce_workload, subprocess_env
from benchmarks._own_peak import read_peak_gib
from memlake.settings import Settings

_PROFILES = {"tiny": (2_000, 20), "quick": (30_000, 150), "full": (1_000_000, 5_000)}


def _job(command: list[str], settings: Settings, name: Path) -> tuple[float, float]:
    """Run a `memlake` command to its end in its own process: its seconds and peak (GiB)."""
    log, peak_file = name.with_suffix(".log"), name.with_suffix(".peak")
    began = time.perf_counter()
    with log.open("w") as sink:
        # Under `_own_peak`: the child's ru_maxrss would start at this process's peak.
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks._own_peak", str(peak_file), *command],
            check=False,
            env=subprocess_env(settings),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    seconds = time.perf_counter() - began
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}): {log.read_text()[-4000:]}")
    return seconds, read_peak_gib(peak_file)


def run(profile: str, out_dir: Path) -> dict[str, Any]:
    events, cubes = _PROFILES[profile]
    settings = bench_settings(out_dir)
    produce_workload(settings, events, cubes=cubes)
    live_s, live_peak_gib = _job(["memlake", "materialize"], settings, out_dir / "live")
    rebuild_s, peak_gib = _job(["memlake", "rebuild", "--verify"], settings, out_dir / "rebuild")
    return {
        "summary": f"{events:,} events rebuilt and verified in {rebuild_s:.1f} s, peak {peak_gib:.2f} GiB",
        "events": events,
        "rebuild_s": round(rebuild_s, 2),
        "live_materialize_s": round(live_s, 2),
        "rebuild_events_per_s": round(events / rebuild_s, 1),
        "peak_rss_gib": round(peak_gib, 3),
        "live_peak_rss_gib": round(live_peak_gib, 3),
        "ratio_rebuild_to_live": round(rebuild_s / live_s, 3),
        "aim": {"peak_rss_gib": 4.0},
        "verified_equal": True,
    }
