"""The job's process settings: set around the driver's run, and taken by each step in a
worker process of its own."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from memlake.settings import PipelineSettings
from pipelines.heap import batch_heap
from pipelines.job_process import JobDoFn, in_sdk_worker, job_process
from pipelines.options import new_pipeline, pipeline_options
from tests.pipelines.helpers import PROCESSES


def _batch_thresholds() -> tuple[int, int, int]:
    with batch_heap():
        return gc.get_threshold()


class _Report(JobDoFn):
    """What the process a step runs in says about itself: a worker of its own, and its thresholds."""

    def process(self, element: int) -> Iterator[tuple[bool, tuple[int, int, int]]]:
        yield in_sdk_worker(), gc.get_threshold()


def test_the_driver_is_no_sdk_worker_and_a_step_in_it_leaves_its_settings_be() -> None:
    before = gc.get_threshold()
    assert not in_sdk_worker()
    _Report().setup()
    assert gc.get_threshold() == before
    with job_process():
        assert gc.get_threshold() == _batch_thresholds()
    assert gc.get_threshold() == before


def test_steps_in_worker_processes_run_under_the_jobs_settings() -> None:
    """Under CPython's thresholds a worker's collector took three times as long (job_process)."""
    assert gc.get_threshold() != _batch_thresholds()  # else this test could not fail
    with new_pipeline(pipeline_options(PipelineSettings(), PROCESSES)) as pipeline:
        reports = pipeline | beam.Create([1, 2, 3, 4]) | beam.ParDo(_Report())
        assert_that(reports, equal_to([(True, _batch_thresholds())] * 4))


def test_steps_in_the_drivers_process_take_the_drivers_settings() -> None:
    with job_process(), new_pipeline(pipeline_options(PipelineSettings())) as pipeline:
        reports = pipeline | beam.Create([1, 2]) | beam.ParDo(_Report())
        assert_that(reports, equal_to([(False, _batch_thresholds())] * 2))
