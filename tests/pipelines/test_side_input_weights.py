"""The SDK harness's side-input cache, weighing values shallowly while memlake's jobs run."""

from __future__ import annotations

import pytest
from apache_beam.runners.worker import statecache

from pipelines.side_input_weights import _shallow_size, shallow_side_input_weights


def test_the_harness_cache_weighs_loaded_side_inputs_with_the_shallow_size() -> None:
    value = [("plan", 1), ("ranges", 2)]
    with shallow_side_input_weights():
        cache = statecache.StateCache(1 << 20)
        assert cache.get("side-input", lambda _: value) is value
        # Pins the pinned Beam: its cache looks the weighing function up in its module.
        assert cache._current_weight == _shallow_size(value)
    assert statecache.get_deep_size is not _shallow_size


def test_beam_s_weighing_comes_back_after_nested_blocks_and_when_the_block_raises() -> None:
    original = statecache.get_deep_size
    with shallow_side_input_weights():
        with shallow_side_input_weights():
            assert statecache.get_deep_size is _shallow_size
        assert statecache.get_deep_size is _shallow_size
    assert statecache.get_deep_size is original
    with pytest.raises(RuntimeError), shallow_side_input_weights():
        raise RuntimeError("a job failed")
    assert statecache.get_deep_size is original
