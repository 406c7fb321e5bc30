"""Beam pipeline options for memlake's jobs: the runner and its options come from settings.

The DirectRunner runs in-process by default; `--direct_num_workers=2
--direct_running_mode=multi_processing` spreads it over processes, and
`--runner=FlinkRunner --flink_master=...` (or Spark, Dataflow) runs the same
graphs on a cluster. Options given on the command line come last and win.
"""

from __future__ import annotations

__all__ = ["pipeline_options", "metric"]

from collections.abc import Sequence
from typing import Any

from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from memlake.settings import PipelineSettings


def pipeline_options(settings: PipelineSettings, extra: Sequence[str] = ()) -> PipelineOptions:
    args = [f"--runner={settings.runner}", *settings.beam_options, *extra]
    return PipelineOptions(args)


def metric(result: Any, namespace: str, name: str) -> int:
    """A counter's committed value after a run (0 when it never counted)."""
    query = result.metrics().query(MetricsFilter().with_namespace(namespace).with_name(name))
    return int(sum(c.committed or 0 for c in query["counters"]))
