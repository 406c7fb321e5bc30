"""Beam pipeline options for memlake's jobs: the runner and its options come from settings.

The DirectRunner runs in-process by default; `--direct_num_workers=2
--direct_running_mode=multi_processing` spreads it over processes, and
`--runner=FlinkRunner --flink_master=...` (or Spark, Dataflow) runs the same
graphs on a cluster. Options given on the command line come last and win.
"""

from __future__ import annotations

__all__ = ["DIRECT_RUNNERS", "pipeline_options", "metric", "Spread"]

from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from memlake.settings import PipelineSettings

# The runners that run a graph on this machine (the DirectRunner runs batch graphs on the FnApiRunner).
DIRECT_RUNNERS = frozenset({"DirectRunner", "FnApiRunner"})


def pipeline_options(settings: PipelineSettings, extra: Sequence[str] = ()) -> PipelineOptions:
    args = [f"--runner={settings.runner}", *settings.beam_options, *extra]
    return PipelineOptions(args)


def metric(result: Any, namespace: str, name: str) -> int:
    """A counter's committed value after a run (0 when it never counted)."""
    query = result.metrics().query(MetricsFilter().with_namespace(namespace).with_name(name))
    return int(sum(c.committed or 0 for c in query["counters"]))


def _one_local_worker(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner
    direct = options.view_as(DirectOptions)
    return (
        (runner is None or str(runner) in DIRECT_RUNNERS)
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
