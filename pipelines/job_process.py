"""The process-wide settings a memlake batch job (land and materialize, rebuild) runs under.

Each one cuts a cost that Beam or CPython charges every micro-batch whatever
it holds; see their modules for what was measured.

The driver sets them around its run (`job_process`). Steps that run in a Beam
SDK worker process of their own (the DirectRunner's `multi_processing` mode, a
cluster's workers) take them in their `setup` (`JobDoFn`), for the rest of that
process's life: a worker runs one job's bundles. Measured here on a 60k-event run
with `--direct_num_workers=2 --direct_running_mode=multi_processing` (three
batches, six worker processes): the workers' collector took 11.2 s of their 41.8
CPU s under CPython's thresholds, and 3.9 s of 34.9 with the job's.
"""

from __future__ import annotations

__all__ = ["job_process", "JobDoFn", "in_sdk_worker"]

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import apache_beam as beam

from pipelines.dofn_specs import memoised_dofn_specs
from pipelines.heap import batch_heap
from pipelines.sampling import brief_state_sampling
from pipelines.side_input_weights import shallow_side_input_weights

# What a Beam SDK worker process runs as its main module, started by the DirectRunner
# (`multi_processing`) or by the SDK container's boot program on a cluster.
_SDK_WORKER_MAIN = "apache_beam.runners.worker.sdk_worker_main"
# The settings this worker process entered, once, for its lifetime.
_WORKER_SETTINGS: list[ExitStack] = []


@contextmanager
def job_process() -> Iterator[None]:
    """Everything returns to how it was when the block ends, raising or not."""
    with batch_heap(), brief_state_sampling(), memoised_dofn_specs(), shallow_side_input_weights():
        yield


def in_sdk_worker() -> bool:
    """Whether this process is a Beam SDK worker (not the driver, nor a worker in its process)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == _SDK_WORKER_MAIN


class JobDoFn(beam.DoFn):
    """A step of a batch job: in a worker process of its own, it runs under `job_process`'s
    settings too. In the driver's process (in-process runs, `LOOPBACK` workers) the
    driver's block has set them, and restores them when the job ends."""

    def setup(self) -> None:
        if not _WORKER_SETTINGS and in_sdk_worker():
            settings = ExitStack()
            settings.enter_context(job_process())
            _WORKER_SETTINGS.append(settings)
