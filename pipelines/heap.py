"""The collector's thresholds while a batch job runs.

A materialize batch allocates hundreds of thousands of objects that outlive
it (events, folded states, the states a follower keeps for its next batch).
With CPython's default thresholds (700, 10, 10) that growth sets off a full
collection every few thousand events, and each one walks the whole heap: a
third of a batch's CPU went to the collector in a 40k-event run here.
Reference counting still frees almost everything at once; the thresholds
only decide how often cycles are looked for, so a batch job looks less often.

Measured with five 10k-event batches onto 300 cubes (the benchmark workload):
collector time 7-8 s of 23-26 s with the defaults, 2.1-2.4 s of 19-22 s
with `_BATCH_THRESHOLDS`.
"""

from __future__ import annotations

__all__ = ["batch_heap", "release_freed"]

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Young collections every 20,000 net allocations; a full one after 50 of the middle
# generation's (and, as always, only once the long-lived heap has grown by a quarter).
_BATCH_THRESHOLDS = (20_000, 10, 50)


@contextmanager
def batch_heap() -> Iterator[None]:
    """Collect cycles less often while the block runs; the previous thresholds come back after."""
    previous = gc.get_threshold()
    gc.set_threshold(*_BATCH_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


def release_freed() -> None:
    """Collect cycles, then hand what the allocators hold free back to the system.

    Between two large batches: Python's objects above 512 bytes live in glibc's heap,
    and Arrow's buffers in its own pool, and each keeps what was freed for its own
    reuse; the next batch's peak then adds to memory the other allocators still hold.
    """
    gc.collect()
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, looked up once (None elsewhere: musl, macOS)."""
    name = ctypes.util.find_library("c")  # runs ldconfig: not once a batch
    if name is None:
        return None
    trim: Callable[[int], int] | None = getattr(ctypes.CDLL(name), "malloc_trim", None)
    return trim
