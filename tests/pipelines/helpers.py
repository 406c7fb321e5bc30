"""Helpers shared by the lake and pipeline tests: produce a workload, fold it purely, read tables."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from lake.compare import compare_table
from lake.rows import event_row, memory_from_json, to_table
from lake.schemas import EVENTS, TABLES
from lake.snapshot import open_snapshot
from lake.tables import Lake
from lake.writer import TableWriter
from memlake.events import Event, serialize_event
from memlake.fold import CubeState, FoldResult, fold
from memlake.model import Memory
from memlake.settings import KafkaSettings, Settings
from streams.producer import EventProducer

# The runners whose workers run apart from the driver, by Beam options.
# The DirectRunner's worker processes.
PROCESSES = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
# How Flink, Spark and Dataflow run a Python pipeline: submitted to a job service as a portable
# pipeline, its steps run by SDK workers. Here the job service is Beam's own, in this process
# (`embed`), and the workers a pool in this process (`LOOPBACK`).
PORTABLE = ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"]


def produce(
    kafka: KafkaSettings, events: Iterable[Event], *, raw: Sequence[tuple[bytes | None, bytes]] = ()
) -> None:
    with EventProducer(kafka) as producer:
        producer.send_many(events)
        futures = [producer.send_raw(key, value) for key, value in raw]
        producer.flush()
        for future in futures:
            future.get(timeout=30)


def land_events(
    lake: Lake,
    events: Sequence[Event],
    *,
    topic: str,
    first_offset: int = 0,
    dead_letters: int = 0,
    writer: str | None = None,
) -> None:
    """Append `events` as partition 0 of `topic` in one commit, as land would: offsets from
    `first_offset`, then `dead_letters` more records the range held (consumed, not landed)."""
    start_ms = 1_767_225_600_000
    rows = [
        event_row(
            event,
            topic=topic,
            partition=0,
            offset=first_offset + i,
            timestamp_ms=start_ms + (first_offset + i) * 10,
            raw=serialize_event(event),
        )
        for i, event in enumerate(events)
    ]
    last = first_offset + len(events) + dead_letters - 1
    TableWriter(lake).commit_events(
        to_table(EVENTS, rows), topic=topic, offsets={0: last}, dead_letters=dead_letters, writer=writer
    )


def pure_fold(events: Iterable[Event]) -> dict[str, FoldResult]:
    """What the lake must hold: each cube's events folded in log (send) order."""
    by_cube: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_cube[event.cube_id].append(event)
    return {cube_id: fold(CubeState(), cube_events) for cube_id, cube_events in by_cube.items()}


def lake_memories(lake: Lake) -> dict[tuple[str, str], Memory]:
    rows = open_snapshot(lake).read("memories", columns=["memory_json"])
    memories = (memory_from_json(v) for v in rows.column("memory_json").to_pylist())
    return {(m.cube_id, m.memory_id): m for m in memories}


def expected_memories(results: dict[str, FoldResult]) -> dict[tuple[str, str], Memory]:
    return {(m.cube_id, m.memory_id): m for r in results.values() for m in r.state.memories.values()}


def assert_same_tables(left: Lake, right: Lake, tables: Iterable[str] = TABLES) -> None:
    for name in tables:
        difference = compare_table(left, left.version(name), right, right.version(name), name)
        assert difference.equal, difference


def with_root(settings: Settings, root: str) -> Settings:
    return settings.model_copy(update={"lake": settings.lake.model_copy(update={"root": root})})


def with_pipelines(settings: Settings, **values: Any) -> Settings:
    """`settings` with other `pipelines` values (batch size, state cache, maintenance)."""
    return settings.model_copy(update={"pipelines": settings.pipelines.model_copy(update=values)})
