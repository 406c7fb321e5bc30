"""The pipeline options memlake's jobs run under, and the reshuffle that depends on them."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from memlake.errors import BrokerUnavailableError, ConcurrentWriteError, ConfigError, StoreUnavailableError
from memlake.settings import PipelineSettings
from pipelines.options import Spread, new_pipeline, pipeline_options, step_errors
from tests.pipelines.helpers import PORTABLE, PROCESSES


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
        PROCESSES,
        ["--direct_num_workers=2", "--direct_running_mode=multi_threading"],
        ["--runner=PortableRunner"],
    ],
)
def test_workers_to_spread_over_get_a_reshuffle(args: list[str]) -> None:
    names = _transform_names(pipeline_options(PipelineSettings(), args))
    assert [n for n in names if n.startswith("Spread/Reshuffle")]


def test_spread_passes_every_element_on() -> None:
    with new_pipeline(pipeline_options(PipelineSettings())) as pipeline:
        out = pipeline | beam.Create(["a", "b", "b"]) | Spread()
        assert_that(out, equal_to(["a", "b", "b"]))


def test_a_direct_job_runs_on_the_fn_api_runner_and_never_tries_prism(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Left to choose, the DirectRunner first downloads Beam's Prism runner from GitHub;
    # refused, it falls back and leaves temporary folders behind.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    caplog.set_level(logging.INFO)
    with new_pipeline(pipeline_options(PipelineSettings())) as pipeline:
        assert isinstance(pipeline.runner, FnApiRunner)
        out = pipeline | beam.Create([1, 2]) | beam.Map(lambda x: x * 10)
        assert_that(out, equal_to([10, 20]))
    assert not [r for r in caplog.records if "prism" in r.getMessage().lower()]
    assert list(scratch.iterdir()) == []


def test_a_cluster_runner_is_left_to_beam() -> None:
    pipeline = new_pipeline(pipeline_options(PipelineSettings(), ["--runner=PortableRunner"]))
    assert not isinstance(pipeline.runner, FnApiRunner)


@pytest.mark.parametrize(
    "args",
    [
        PROCESSES,
        PORTABLE,
        ["--runner=FlinkRunner", "--flink_master=flink:8081", "--parallelism=4", "--environment_type=DOCKER"],
        ["--runner=SparkRunner", "--spark_master_url=spark://m:7077"],
        ["--runner=DataflowRunner", "--project=p", "--region=europe-west1", "--temp_location=gs://b/t"],
        ["--experiments=use_runner_v2", "--save_main_session"],
    ],
)
def test_every_option_of_beams_runners_is_taken(args: list[str]) -> None:
    options = pipeline_options(PipelineSettings(), args).get_all_options()
    assert all(options[arg.split("=")[0].lstrip("-")] is not None for arg in args)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (
            ["--direct_num_worker=2"],
            "Beam has no option --direct_num_worker (did you mean --direct_num_workers?)",
        ),
        (["--runner=FlinkRunner", "--flink_mastr", "h:8081"], "--flink_mastr (did you mean --flink_master?)"),
        (["--no_such_thing=1", "--direct_num_workers=2"], "Beam has no option --no_such_thing"),
        (["multi_processing"], "not Beam options (they start with --): ['multi_processing']"),
    ],
)
def test_an_option_beam_does_not_know_is_refused_before_anything_runs(args: list[str], problem: str) -> None:
    # Beam would drop it with a warning and run on: in one process, or on an embedded Flink.
    with pytest.raises(ConfigError) as refused:
        pipeline_options(PipelineSettings(), args)
    assert refused.value.setting == "pipelines.beam_options"
    assert problem in refused.value.problem
    with pytest.raises(ConfigError, match="--typo"):
        pipeline_options(PipelineSettings(beam_options=["--typo"]))


class _Raise(beam.DoFn):  # type: ignore[misc]
    def __init__(self, kind: type[Exception], *args: str) -> None:
        self._kind, self._args = kind, args

    def process(self, element: int) -> list[int]:
        raise self._kind(*self._args)


def _run_raising(kind: type[Exception], *args: str, beam_args: Sequence[str] = ()) -> None:
    options = pipeline_options(PipelineSettings(), beam_args)
    with step_errors(), new_pipeline(options) as pipeline:
        _ = pipeline | beam.Create([1]) | "Commit" >> beam.ParDo(_Raise(kind, *args))


def test_a_memlake_error_a_step_raised_comes_out_of_the_run_as_itself() -> None:
    with pytest.raises(ConcurrentWriteError) as raised:
        _run_raising(ConcurrentWriteError, "usage", "another writer committed first")
    assert raised.value.table == "usage"
    assert raised.value.__notes__ == ["raised in the Beam step 'Commit'"]


def test_other_errors_come_out_as_the_runner_raised_them() -> None:
    with pytest.raises(ValueError, match=r"not memlake's \[while running 'Commit'\]"):
        _run_raising(ValueError, "not memlake's")


@pytest.mark.parametrize(
    "beam_args",
    [
        pytest.param(PROCESSES, id="processes"),
        pytest.param(PORTABLE, id="portable"),  # the path of Flink, Spark and Dataflow
    ],
)
def test_a_write_conflict_in_a_worker_is_read_back_from_its_text(beam_args: list[str]) -> None:
    """These runners send a worker's error back as text: a follower must still see a conflict as one."""
    with pytest.raises(ConcurrentWriteError) as raised:
        _run_raising(
            ConcurrentWriteError,
            "usage",
            "another writer committed first: Concurrent transaction failed.",
            beam_args=beam_args,
        )
    assert raised.value.table == "usage"
    assert raised.value.problem == "another writer committed first: Concurrent transaction failed."


def test_the_store_unavailable_in_a_worker_is_read_back_from_its_text() -> None:
    """A follower waits out the store's outage a worker met, as one its own process met."""
    problem = "OSError: Generic S3 error: Error performing GET http://s3/b/t in 2.1s, after 10 retries"
    with pytest.raises(StoreUnavailableError) as raised:
        _run_raising(StoreUnavailableError, "memories", problem, beam_args=PROCESSES)
    assert (raised.value.table, raised.value.problem) == ("memories", problem)


@pytest.mark.parametrize(
    "beam_args",
    [pytest.param(PROCESSES, id="processes"), pytest.param(PORTABLE, id="portable")],
)
def test_kafka_unavailable_in_a_worker_is_read_back_from_its_text(beam_args: list[str]) -> None:
    """A follower waits out an outage a worker met, as one its own process met."""
    problem = "reading t[3]: KafkaTimeoutError: Failed to get offsets by timestamps in 30000 ms"
    with pytest.raises(BrokerUnavailableError) as raised:
        _run_raising(BrokerUnavailableError, "10.0.0.7:9092,10.0.0.8:9092", problem, beam_args=beam_args)
    assert raised.value.bootstrap == "10.0.0.7:9092,10.0.0.8:9092"
    assert raised.value.problem == problem
