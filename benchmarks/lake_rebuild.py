"""Rebuild: replay the whole log into fresh tables and verify them, its time and peak memory.

The live lake is materialized first by `memlake materialize`, then `memlake
rebuild --verify` folds the same log into fresh tables and compares them. Each
runs in its own process under `benchmarks._own_peak`, so that each peak
reported is that job's own and not this process's (see there). Aim for
1,000,000 events ("full"): the rebuild under 4 GiB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks._lake_bench import bench_settings, produce_workload, subprocess_env
from benchmarks._own_peak import run_measured

_PROFILES = {"tiny": (2_000, 20), "quick": (30_000, 150), "full": (1_000_000, 5_000)}


def run(profile: str, out_dir: Path) -> dict[str, Any]:
    events, cubes = _PROFILES[profile]
    settings = bench_settings(out_dir)
    produce_workload(settings, events, cubes=cubes)
    env = subprocess_env(settings)
    live = run_measured(["memlake", "materialize"], env=env, work=out_dir / "live")
    rebuilt = run_measured(["memlake", "rebuild", "--verify"], env=env, work=out_dir / "rebuild")
    return {
        "summary": (
            f"{events:,} events rebuilt and verified in {rebuilt.seconds:.1f} s, "
            f"peak {rebuilt.peak_gib:.2f} GiB"
        ),
        "events": events,
        "rebuild_s": round(rebuilt.seconds, 2),
        "live_materialize_s": round(live.seconds, 2),
        "rebuild_events_per_s": round(events / rebuilt.seconds, 1),
        "peak_rss_gib": round(rebuilt.peak_gib, 3),
        "live_peak_rss_gib": round(live.peak_gib, 3),
        "ratio_rebuild_to_live": round(rebuilt.seconds / live.seconds, 3),
        "aim": {"peak_rss_gib": 4.0},
        "verified_equal": True,
    }
