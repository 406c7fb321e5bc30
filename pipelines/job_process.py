"""The process-wide settings a memlake batch job (land and materialize, rebuild) runs under.

Each one cuts a cost that Beam or CPython charges every micro-batch whatever
it holds; see their modules for what was measured.
"""

from __future__ import annotations

__all__ = ["job_process"]

from collections.abc import Iterator
from contextlib import contextmanager

from pipelines.dofn_specs import memoised_dofn_specs
from pipelines.heap import batch_heap
from pipelines.sampling import brief_state_sampling
from pipelines.side_input_weights import shallow_side_input_weights


@contextmanager
def job_process() -> Iterator[None]:
    """Everything returns to how it was when the block ends, raising or not."""
    with batch_heap(), brief_state_sampling(), memoised_dofn_specs(), shallow_side_input_weights():
        yield
