"""PreparedPipeline: one graph, built and translated once, run again with what it reads at run time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.options import metric
from pipelines.prepared import PreparedPipeline


class _ReadNumbers(beam.DoFn):
    """Reads the numbers in a file when the graph runs (as land plans its ranges then)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._seen = Metrics.counter("test", "numbers")

    def process(self, _: object) -> Iterator[int]:
        for line in Path(self._path).read_text().split():
            self._seen.inc()
            yield int(line)


class _Total(beam.DoFn):
    def __init__(self) -> None:
        self._total = Metrics.counter("test", "total")

    def process(self, element: tuple[int, list[int]]) -> Iterator[int]:
        self._total.inc(sum(element[1]))
        yield sum(element[1])


def test_the_graph_is_built_once_and_each_run_reads_afresh(tmp_path: Path) -> None:
    source = tmp_path / "numbers.txt"
    builds = []

    def build(pipeline: beam.Pipeline) -> None:
        builds.append(pipeline)
        _ = (
            pipeline
            | beam.Create([None])
            | beam.ParDo(_ReadNumbers(str(source)))
            | beam.Map(lambda n: (n % 2, n))
            | beam.GroupByKey()  # a stage boundary: the replay runs more than one fused stage
            | beam.ParDo(_Total())
        )

    prepared = PreparedPipeline(build, PipelineOptions(["--runner=DirectRunner"]))
    assert prepared.reusable
    for numbers in ([1, 2, 3], [10, 20], []):
        source.write_text("\n".join(map(str, numbers)))
        result = prepared.run()
        assert metric(result, "test", "numbers") == len(numbers)
        assert metric(result, "test", "total") == sum(numbers)
    assert len(builds) == 1


def test_other_runners_get_a_fresh_pipeline_per_run() -> None:
    prepared = PreparedPipeline(lambda p: None, PipelineOptions(["--runner=FlinkRunner"]))
    assert not prepared.reusable
