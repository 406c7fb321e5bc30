"""Beam pipeline options for memlake's jobs: the runner and its options come from settings.

The DirectRunner runs in-process by default; `--direct_num_workers=2
--direct_running_mode=multi_processing` spreads it over processes, and
`--runner=FlinkRunner --flink_master=...` (or Spark, Dataflow) runs the same
graphs on a cluster. Options given on the command line come last and win.

Under the DirectRunner, a job's graph runs on the FnApiRunner, which
`new_pipeline` builds itself: left to choose, the DirectRunner (Beam 2.77)
first tries its Prism runner, a Go binary it downloads from GitHub at run
time. Where that is refused (here: no network but package registries) it falls
back after a failed request and leaves temporary folders behind; where it
succeeds, the job runs on another runner than the one memlake is tested on.
"""

from __future__ import annotations

__all__ = [
    "DIRECT_RUNNERS",
    "pipeline_options",
    "is_direct",
    "fn_api_runner",
    "new_pipeline",
    "step_errors",
    "metric",
    "Spread",
]

import difflib
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from memlake.errors import (
    BrokerUnavailableError,
    ConcurrentWriteError,
    ConfigError,
    LakeError,
    MemlakeError,
    StoreUnavailableError,
)
from memlake.settings import PipelineSettings

# The runners that run a graph on this machine (the DirectRunner runs batch graphs on the FnApiRunner).
DIRECT_RUNNERS = frozenset({"DirectRunner", "FnApiRunner"})


def pipeline_options(settings: PipelineSettings, extra: Sequence[str] = ()) -> PipelineOptions:
    """The options of a job; one Beam does not know is a `ConfigError`.

    Beam itself drops an option it cannot parse with a warning and runs on: a mistyped
    `--direct_num_worker=2` ran in one process, a mistyped `--flink_mastr=...` on an
    embedded Flink instead of the cluster."""
    args = [f"--runner={settings.runner}", *settings.beam_options, *extra]
    _refuse_unknown(args)
    return PipelineOptions(args)


def _refuse_unknown(args: Sequence[str]) -> None:
    # As `PipelineOptions.get_all_options` parses (Beam 2.77): every options class Beam
    # defines, which `apache_beam.options.pipeline_options` holds, the runners' included.
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    classes: dict[str, type[PipelineOptions]] = {}
    for cls in PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(list(args))
    if not unknown:
        return
    names = [arg.split("=", 1)[0] for arg in unknown if arg.startswith("-")]
    if not names:
        raise ConfigError("pipelines.beam_options", f"not Beam options (they start with --): {unknown}")
    known = [option for action in parser._actions for option in action.option_strings]
    hints = []
    for name in names:
        close = difflib.get_close_matches(name, known, n=1)
        hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
    raise ConfigError("pipelines.beam_options", f"Beam has no option {', '.join(hints)}")


def is_direct(options: PipelineOptions) -> bool:
    """Whether the graph runs on this machine, on the FnApiRunner."""
    runner = options.view_as(StandardOptions).runner
    return runner is None or str(runner) in DIRECT_RUNNERS


def fn_api_runner(options: PipelineOptions) -> Any:
    """The runner the DirectRunner falls back to for batch graphs when Prism is not there,
    with the options for its workers (in-process, or `--direct_running_mode=multi_processing`)."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=info)


def new_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """A pipeline on the runner `options` name; under the DirectRunner, on the FnApiRunner."""
    if is_direct(options):
        return beam.Pipeline(runner=fn_api_runner(options), options=options)
    return beam.Pipeline(options=options)


_STEP = re.compile(r"\[while running '([^']+)'\]")


@contextmanager
def step_errors() -> Iterator[None]:
    """Run a graph so that a memlake error one of its steps raised comes out as itself.

    Beam re-raises what a step raised inside its own error (a RuntimeError naming the
    step), and memlake's callers act on the typed errors: a follower plans again after a
    `ConcurrentWriteError`, the CLI prints a `MemlakeError` as one line. The step's name
    stays as a note. A runner whose workers run in other processes sends the error back
    as text only: a `ConcurrentWriteError`, a `StoreUnavailableError` and a
    `BrokerUnavailableError` are read back from it, since a follower acts on them; anything
    else comes out as the runner raised it.
    """
    try:
        yield
    except MemlakeError:
        raise
    except Exception as e:
        raised = _memlake_error_in(e)
        if raised is None:
            raise
        step = _STEP.search(str(e))
        if step is not None:
            raised.add_note(f"raised in the Beam step {step.group(1)!r}")
        raise raised from None


# How a worker in another process reports one (Beam's text of the error it caught).
_STEP_NOTE = r"(?: \[while running '[^']+'\])?$"
_LAKE_KINDS: dict[str, type[LakeError]] = {
    kind.__name__: kind for kind in (ConcurrentWriteError, StoreUnavailableError)
}
_LAKE_TEXT = re.compile(
    rf"memlake\.errors\.(?P<kind>{'|'.join(_LAKE_KINDS)}): "
    r"lake table '(?P<table>[^']+)': (?P<problem>.*?)" + _STEP_NOTE,
    re.MULTILINE,
)
_BROKER_TEXT = re.compile(
    r"memlake\.errors\.BrokerUnavailableError: Kafka at (?P<bootstrap>\S+) is unavailable: (?P<problem>.*?)"
    + _STEP_NOTE,
    re.MULTILINE,
)


def _memlake_error_in(error: BaseException) -> MemlakeError | None:
    seen: set[int] = set()
    found: BaseException | None = error
    while found is not None and id(found) not in seen:
        if isinstance(found, MemlakeError):
            return found
        seen.add(id(found))
        found = found.__cause__ or found.__context__
    text = _LAKE_TEXT.search(str(error))
    if text is not None:
        return _LAKE_KINDS[text["kind"]](text["table"], text["problem"])
    text = _BROKER_TEXT.search(str(error))
    return BrokerUnavailableError(text["bootstrap"], text["problem"]) if text else None


def metric(result: Any, namespace: str, name: str) -> int:
    """A counter's committed value after a run (0 when it never counted)."""
    query = result.metrics().query(MetricsFilter().with_namespace(namespace).with_name(name))
    return int(sum(c.committed or 0 for c in query["counters"]))


def _one_local_worker(options: PipelineOptions) -> bool:
    direct = options.view_as(DirectOptions)
    return (
        is_direct(options)
        and (direct.direct_num_workers or 1) == 1
        and direct.direct_running_mode == "in_memory"
    )


class Spread(beam.PTransform):  # type: ignore[type-arg]
    """A reshuffle, so that a distributed runner spreads the elements over its workers.

    Where the graph runs in one in-process worker there is nobody to spread them to, and
    the reshuffle would only cut the graph in two: one more bundle each micro-batch (its
    processors built, its DoFns unpickled), about 30 ms here. It then passes them on.
    """

    def expand(self, pcoll: Any) -> Any:
        if _one_local_worker(pcoll.pipeline.options):
            return pcoll
        return pcoll | beam.Reshuffle()
