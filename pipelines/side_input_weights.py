"""Side inputs weighed by their shallow size while memlake's jobs run.

Beam's SDK harness keeps the side inputs a bundle reads in a cache bounded by
weight, and weighs each value it loads with `objsize.get_deep_size`, which
first gathers the ids of every module global in the process so as to leave
them out. For memlake's side inputs (a batch's plan, its offset ranges, its
Arrow tables and dead letters) that was 6.1% of the CPU of a follower
running one small batch after another (py-spy), whatever the batch held.

In-process, that cache lives for one run of a graph (the worker handler that
owns it is built per run), so a weight only orders evictions within one
batch; and objsize never saw the Arrow buffers, which are most of the bytes.
The shallow size of the value and of its items serves that purpose as well.
"""

from __future__ import annotations

__all__ = ["shallow_side_input_weights"]

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from apache_beam.runners.worker import statecache

from pipelines.swap import swapped


def _shallow_size(*objs: Any) -> int:
    size = 0
    for obj in objs:
        size += sys.getsizeof(obj)
        if isinstance(obj, list | tuple):
            size += sum(sys.getsizeof(item) for item in obj)
    return size


@contextmanager
def shallow_side_input_weights() -> Iterator[None]:
    """While the block runs, the harness's side-input cache weighs values shallowly."""
    with swapped(statecache, "get_deep_size", lambda _: _shallow_size):
        yield
