"""Materialization throughput: events already in Kafka -> every derived table, against the raw floor.

The floor, measured in the same run on the same events: kafka-python reads the
topic (the same bounded reader), pyarrow parses the JSON, and one Delta append
writes it. memlake does that plus validation, the per-cube fold and seven
tables' commits through two Beam graphs. Aim: 10,000 events/s and 40% of the floor.

Two more figures say what bounds it: the CPU time the run took (user and system,
every thread; this machine has two cores), and the kernel alone on the same
events in this process, with no Kafka, Delta or Beam: parse, the per-cube fold
onto empty states and the rows of every table as Arrow, in CPU seconds.
"""

from __future__ import annotations

import resource
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pajson

from benchmarks._lake_bench import bench_settings, produce_workload
from lake.schemas import DERIVED_TABLES
from lake.state import LoadedState
from lake.tables import Lake
from memlake.errors import InvalidEventError
from memlake.events import parse_event
from memlake.fold import CubeState
from pipelines.derived import rows_table
from pipelines.folding import LoggedEvent, fold_cube
from pipelines.follow import run_jobs
from pipelines.heap import batch_heap
from streams.reader import OffsetRange, Record, end_offsets, read_range

# Quick: two micro-batches of 30,000 (the second folds onto kept states), about 80 s in all here.
_PROFILES = {"tiny": (2_000, 20), "quick": (60_000, 300), "full": (1_000_000, 5_000)}
_BATCH = {"tiny": 1_000, "quick": 30_000, "full": 50_000}


def _records(settings: Any) -> list[Record]:
    topic = settings.kafka.events_topic
    records: list[Record] = []
    for partition, end in sorted(end_offsets(settings.kafka, topic).items()):
        records.extend(read_range(settings.kafka, OffsetRange(topic, partition, 0, end)))
    return records


def _floor(settings: Any, out_dir: Path) -> tuple[float, int, list[Record]]:
    """Seconds and events of the floor, and the records it read (the kernel's input after)."""
    from deltalake import write_deltalake

    began = time.perf_counter()
    records = _records(settings)
    values = [r.value for r in records if r.value]
    # The envelope is parsed; payloads vary by type and stay JSON text, as in the events table.
    envelope = pa.schema(
        [("event_id", pa.string()), ("type", pa.string()), ("cube_id", pa.string()),
         ("memory_id", pa.string()), ("occurred_at", pa.string()), ("schema", pa.int32())]
    )  # fmt: skip
    options = pajson.ParseOptions(explicit_schema=envelope, unexpected_field_behavior="ignore")
    table = pajson.read_json(pa.py_buffer(b"\n".join(values)), parse_options=options)
    flat = table.append_column("event_json", pa.array([v.decode() for v in values]))
    write_deltalake(str(out_dir / "floor"), flat, mode="append")
    return time.perf_counter() - began, len(values), records


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _kernel(records: list[Record], buckets: int) -> dict[str, float]:
    """CPU seconds of the kernel's steps on `records`, in this process, without any I/O.

    Under the collector thresholds the jobs run with (`batch_heap`): with CPython's
    defaults the same steps took 12.6 CPU s here against 6.7, nearly half in the collector.
    """
    with batch_heap():
        return _kernel_steps(records, buckets)


def _kernel_steps(records: list[Record], buckets: int) -> dict[str, float]:
    spent: dict[str, float] = {}
    began = time.process_time()
    by_cube: dict[str, list[LoggedEvent]] = defaultdict(list)
    at = datetime.now(UTC)
    for r in records:
        try:
            raw = (r.value or b"").decode()
            event = parse_event(raw)
        except InvalidEventError:
            continue  # a dead letter: land keeps it out of the fold
        by_cube[event.cube_id].append(LoggedEvent(event, raw, 1, r.topic, r.partition, r.offset, at))
    spent["parse"] = time.process_time() - began
    began = time.process_time()
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for cube_id in sorted(by_cube):
        folded = fold_cube(LoadedState(CubeState()), by_cube[cube_id], buckets=buckets)
        for name in DERIVED_TABLES:
            rows[name].extend(folded.table(name))
    spent["fold"] = time.process_time() - began
    began = time.process_time()
    for name in DERIVED_TABLES:
        rows_table(name, rows[name])
    spent["arrow_rows"] = time.process_time() - began
    return {name: round(value, 2) for name, value in spent.items()}


def run(profile: str, out_dir: Path) -> dict[str, Any]:
    events, cubes = _PROFILES[profile]
    settings = bench_settings(out_dir, batch_max_events=_BATCH[profile])
    produce_workload(settings, events, cubes=cubes)

    floor_s, floor_n, records = _floor(settings, out_dir)
    cpu_before, began = _cpu_s(), time.perf_counter()
    progress = run_jobs(settings)
    memlake_s = time.perf_counter() - began
    memlake_cpu_s = _cpu_s() - cpu_before
    kernel = _kernel(records, settings.lake.buckets)
    del records
    kernel_s = sum(kernel.values())
    lake = Lake(settings.lake)
    assert progress.materialized == events, (progress.materialized, events)
    assert lake.watermark("memories") == lake.version("events")

    memlake_rate = events / memlake_s
    floor_rate = floor_n / floor_s
    return {
        "summary": (
            f"{events:,} events to 7 tables: {memlake_rate:,.0f} events/s "
            f"({memlake_rate / floor_rate:.0%} of the raw floor, {floor_rate:,.0f} events/s); "
            f"{memlake_cpu_s:.1f} CPU s, of which the kernel alone takes {kernel_s:.1f}"
        ),
        "events": events,
        "cubes": cubes,
        "batches": progress.batches,
        "seconds": round(memlake_s, 2),
        "throughput": {
            "memlake": round(memlake_rate, 1),
            "raw_floor": round(floor_rate, 1),
            "kernel_only": round(events / kernel_s, 1),
        },
        "ratio_to_floor": round(memlake_rate / floor_rate, 3),
        "cpu_s": round(memlake_cpu_s, 2),
        "cores_busy": round(memlake_cpu_s / memlake_s, 2),
        "kernel_cpu_s": kernel,
        "ratio_kernel_to_run_cpu": round(kernel_s / memlake_cpu_s, 3),
        "aim": {"events_per_s": 10_000, "ratio_to_floor": 0.4},
        "applied": progress.applied,
        "rejected": progress.rejected,
        "duplicates": progress.duplicates,
    }
