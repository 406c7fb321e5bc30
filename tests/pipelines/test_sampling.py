"""Beam's state sampler period while memlake's jobs run."""

from __future__ import annotations

import pytest
from apache_beam.runners.worker import statesampler
from apache_beam.utils.counters import CounterFactory

from pipelines.sampling import _CEILING_MS, brief_state_sampling


def test_samplers_made_inside_the_block_sleep_briefly_and_beam_s_default_comes_back() -> None:
    init = statesampler.StateSampler.__init__
    # The pinned Beam creates a bundle's sampler with this default: if it changes, the
    # block below does nothing and this says so.
    assert init.__defaults__ == (statesampler.DEFAULT_SAMPLING_PERIOD_MS,)
    with brief_state_sampling():
        assert init.__defaults__ == (_CEILING_MS,)
        sampler = statesampler.StateSampler("test", CounterFactory())
        sampler.start()
        sampler.stop()
        with brief_state_sampling():  # nested: still brief, and the outer block's value after
            assert init.__defaults__ == (_CEILING_MS,)
        assert init.__defaults__ == (_CEILING_MS,)
    assert init.__defaults__ == (statesampler.DEFAULT_SAMPLING_PERIOD_MS,)


def test_the_default_comes_back_when_the_block_raises() -> None:
    init = statesampler.StateSampler.__init__
    with pytest.raises(RuntimeError), brief_state_sampling():
        raise RuntimeError("a job failed")
    assert init.__defaults__ == (statesampler.DEFAULT_SAMPLING_PERIOD_MS,)
