"""The batch jobs' collector thresholds: raised inside the block, given back after it."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.heap import batch_heap


def test_thresholds_are_raised_inside_and_restored_after() -> None:
    before = gc.get_threshold()
    with batch_heap():
        inside = gc.get_threshold()
    assert inside[0] > before[0]
    assert gc.get_threshold() == before


def test_thresholds_are_restored_when_the_job_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), batch_heap():
        raise RuntimeError("batch failed")
    assert gc.get_threshold() == before


def test_collection_still_runs_inside() -> None:
    # Cycles are still found: only how often they are looked for changes.
    with batch_heap():
        assert gc.isenabled()
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1


_PROBE = """
import gc
from pipelines.heap import release_freed

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024

base = rss_mib()
# About 300 MB of objects above pymalloc's 512 bytes (so in glibc's heap), every
# thousandth kept so that the heap's top cannot simply shrink.
made = [bytes(1000) + bytes([i % 256]) for i in range(300_000)]
kept = made[::1000]
del made
gc.collect()
freed = rss_mib()
release_freed()
print(base, freed, rss_mib())
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the resident size from /proc")
def test_release_freed_hands_back_what_the_heap_kept_after_a_batch() -> None:
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=repo, capture_output=True, text=True, check=True, timeout=120
    )
    base, freed, after = (int(x) for x in done.stdout.split())
    assert freed - base > 200  # the freed objects were still held
    assert after - base < (freed - base) / 2
