"""The pipeline options memlake's jobs run under, and the reshuffle that depends on them."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from memlake.settings import PipelineSettings
from pipelines.options import Spread, pipeline_options


def _transform_names(options: PipelineOptions) -> list[str]:
    pipeline = beam.Pipeline(options=options)
    _ = pipeline | beam.Create([1, 2, 3]) | "Spread" >> Spread()
    proto = pipeline.to_runner_api()
    return [t.unique_name for t in proto.components.transforms.values()]


def test_one_in_process_worker_gets_no_reshuffle() -> None:
    names = _transform_names(pipeline_options(PipelineSettings()))
    assert not [n for n in names if n.startswith("Spread/")]


@pytest.mark.parametrize(
    "args",
    [
        ["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
        ["--direct_num_workers=2", "--direct_running_mode=multi_threading"],
        ["--runner=PortableRunner"],
    ],
)
def test_workers_to_spread_over_get_a_reshuffle(args: list[str]) -> None:
    names = _transform_names(pipeline_options(PipelineSettings(), args))
    assert [n for n in names if n.startswith("Spread/Reshuffle")]


def test_spread_passes_every_element_on() -> None:
    with beam.Pipeline(options=pipeline_options(PipelineSettings())) as pipeline:
        out = pipeline | beam.Create(["a", "b", "b"]) | Spread()
        assert_that(out, equal_to(["a", "b", "b"]))
