"""Table open and `as_of` latency after many small commits, before and after maintenance.

Micro-batches leave one small file per bucket per commit. This writes the
history of a few cubes as `commits` tiny commits to `memory_versions`,
`cube_versions` and `cubes` (as follow mode would), then times opening a table
and `as_of(cube, version)`; then compacts and checkpoints and times them again.
Delta's own checkpoint every `lake.checkpoint_interval` commits is on in both.
Profiles: 30 commits (tiny), 200 (quick: 66 s at load 4-5, as_of 420 -> 79 ms;
300 took 140 s at load 5-9), 10,000 (full). Each run starts from an empty lake.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks._lake_workload import generate
from lake.maintenance import checkpoint, compact
from lake.state import LoadedState
from lake.tables import Lake
from lake.time_travel import as_of
from memlake.events import serialize_event
from memlake.fold import CubeState
from memlake.settings import LakeSettings
from pipelines.derived import commit_table, rows_table
from pipelines.folding import LoggedEvent, fold_cube

_PROFILES = {"tiny": 30, "quick": 200, "full": 10_000}  # commits; each writes three tables
_TABLES = ("memory_versions", "cube_versions", "cubes")


def _median_s(action: Any, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _measure(lake: Lake, cube: str, version: int) -> dict[str, float]:
    return {
        "open_ms": round(1000 * _median_s(lambda: lake.table("memory_versions").version()), 2),
        "as_of_ms": round(1000 * _median_s(lambda: as_of(lake, cube, version=version)), 2),
        "files": len(lake.table("memory_versions").file_uris()),
    }


def run(profile: str, out_dir: Path) -> dict[str, Any]:
    commits = _PROFILES[profile]
    # A fresh lake: the commits carry watermarks, so on a lake left by an earlier run every one
    # would be skipped as already applied and nothing would be measured.
    shutil.rmtree(out_dir / "lake", ignore_errors=True)
    lake = Lake(LakeSettings(root=str(out_dir / "lake")))
    lake.ensure_all()
    events = generate(max(commits * 2, 200), cubes=4, seed=3, rollbacks=False, erasures=False)
    cube = events[0].cube_id
    mine = [e for e in events if e.cube_id == cube]
    at = events[0].occurred_at
    logged = [LoggedEvent(e, serialize_event(e).decode(), 1, "t", 0, i, at) for i, e in enumerate(mine)]
    rows = fold_cube(LoadedState(CubeState()), logged, buckets=lake.settings.buckets)
    version_rows = sorted(rows.memory_versions, key=lambda r: r["cube_version"])
    cube_rows = rows.cube_versions
    began = time.perf_counter()
    for i in range(commits):
        lo, hi = i * len(cube_rows) // commits, (i + 1) * len(cube_rows) // commits
        top = cube_rows[hi - 1]["version"] if hi > lo else 0
        chunk = (
            [r for r in version_rows if cube_rows[lo]["version"] <= r["cube_version"] <= top]
            if hi > lo
            else []
        )
        for r in [*chunk, *cube_rows[lo:hi]]:
            r["_ev"] = i
        commit_table(lake, "memory_versions", [rows_table("memory_versions", chunk)], watermark=i)
        commit_table(lake, "cube_versions", [rows_table("cube_versions", cube_rows[lo:hi])], watermark=i)
        commit_table(lake, "cubes", [rows_table("cubes", rows.cubes)], watermark=i)
    write_s = time.perf_counter() - began
    probe = max(1, cube_rows[len(cube_rows) // 2]["version"])
    before = _measure(lake, cube, probe)
    began = time.perf_counter()
    compact(lake, _TABLES)
    checkpoint(lake, _TABLES)
    maintenance_s = time.perf_counter() - began
    after = _measure(lake, cube, probe)
    return {
        "summary": (
            f"after {commits:,} small commits: open {before['open_ms']:.0f} -> {after['open_ms']:.0f} ms, "
            f"as_of {before['as_of_ms']:.0f} -> {after['as_of_ms']:.0f} ms with compact+checkpoint"
        ),
        "commits": commits,
        "write_s": round(write_s, 2),
        "before": before,
        "after": after,
        "maintenance_s": round(maintenance_s, 2),
        "as_of_speedup_ratio": round(before["as_of_ms"] / max(after["as_of_ms"], 1e-6), 2),
        "open_speedup_ratio": round(before["open_ms"] / max(after["open_ms"], 1e-6), 2),
    }
