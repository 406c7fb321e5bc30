"""The batch jobs' collector thresholds: raised inside the block, given back after it."""

from __future__ import annotations

import gc

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
