"""Beam's state sampler, sampling often enough that the end of a bundle does not wait for it.

Every bundle the SDK harness runs starts a sampler thread (it attributes time
to steps for Beam's metrics), and the bundle's end joins it, which waits for
the thread's current sleep. The sleep ramps from 2 ms up to 200 ms, 1.2x a
sample, so a bundle of a few hundred milliseconds ends with a wait of tens of
milliseconds, and a micro-batch runs seven bundles. Measured here with four
thousand events in eight batches: 56 joins took 802 ms in all (100 ms a
batch) with the 200 ms ceiling, 217 ms with 10 ms, 60 ms with 2 ms. While
memlake's jobs run in this process the ceiling is `_CEILING_MS`; the sampler
only wakes more often (a lock taken without the GIL), and its step times get
finer.
"""

from __future__ import annotations

__all__ = ["brief_state_sampling"]

from collections.abc import Iterator
from contextlib import contextmanager

from apache_beam.runners.worker import statesampler

_CEILING_MS = 2


@contextmanager
def brief_state_sampling() -> Iterator[None]:
    """Samplers created in this process while the block runs sleep at most `_CEILING_MS`."""
    init = statesampler.StateSampler.__init__
    previous = init.__defaults__
    # The bundle processor creates its sampler without a period, so the default decides.
    # A Beam whose signature differs keeps its own default (a test pins the one here).
    if previous is None or len(previous) != 1 or not isinstance(previous[0], int):
        yield
        return
    init.__defaults__ = (min(previous[0], _CEILING_MS),)
    try:
        yield
    finally:
        init.__defaults__ = previous
