"""Materialization throughput: events already in Kafka -> every derived table, against the raw floor.

The floor, measured in the same run on the same events: kafka-python reads the
topic (the same bounded reader), pyarrow parses the JSON, and one Delta append
writes it. memlake does that plus validation, the per-cube fold and seven
tables' commits through two Beam graphs. Aim: 10,000 events/s and 40% of the floor.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pajson

from benchmarks._lake_bench import bench_settings, produce_workload
from lake.tables import Lake
from pipelines.follow import run_jobs
from streams.reader import OffsetRange, end_offsets, read_range

# Quick: two micro-batches of 30,000 (the second folds onto kept states), about 80 s in all here.
_PROFILES = {"tiny": (2_000, 20), "quick": (60_000, 300), "full": (1_000_000, 5_000)}
_BATCH = {"tiny": 1_000, "quick": 30_000, "full": 50_000}


def _floor(settings: Any, out_dir: Path) -> tuple[float, int]:
    from deltalake import write_deltalake

    began = time.perf_counter()
    values: list[bytes] = []
    topic = settings.kafka.events_topic
    for partition, end in sorted(end_offsets(settings.kafka, topic).items()):
        span = OffsetRange(topic, partition, 0, end)
        values.extend(r.value for r in read_range(settings.kafka, span) if r.value)
    # The envelope is parsed; payloads vary by type and stay JSON text, as in the events table.
    envelope = pa.schema(
        [("event_id", pa.string()), ("type", pa.string()), ("cube_id", pa.string()),
         ("memory_id", pa.string()), ("occurred_at", pa.string()), ("schema", pa.int32())]
    )  # fmt: skip
    options = pajson.ParseOptions(explicit_schema=envelope, unexpected_field_behavior="ignore")
    table = pajson.read_json(pa.py_buffer(b"\n".join(values)), parse_options=options)
    flat = table.append_column("event_json", pa.array([v.decode() for v in values]))
    write_deltalake(str(out_dir / "floor"), flat, mode="append")
    return time.perf_counter() - began, len(values)


def run(profile: str, out_dir: Path) -> dict[str, Any]:
    events, cubes = _PROFILES[profile]
    settings = bench_settings(out_dir, batch_max_events=_BATCH[profile])
    produce_workload(settings, events, cubes=cubes)

    floor_s, floor_n = _floor(settings, out_dir)
    began = time.perf_counter()
    progress = run_jobs(settings)
    memlake_s = time.perf_counter() - began
    lake = Lake(settings.lake)
    assert progress.materialized == events, (progress.materialized, events)
    assert lake.watermark("memories") == lake.version("events")

    memlake_rate = events / memlake_s
    floor_rate = floor_n / floor_s
    return {
        "summary": (
            f"{events:,} events to 7 tables: {memlake_rate:,.0f} events/s "
            f"({memlake_rate / floor_rate:.0%} of the raw floor, {floor_rate:,.0f} events/s)"
        ),
        "events": events,
        "cubes": cubes,
        "batches": progress.batches,
        "seconds": round(memlake_s, 2),
        "throughput": {"memlake": round(memlake_rate, 1), "raw_floor": round(floor_rate, 1)},
        "ratio_to_floor": round(memlake_rate / floor_rate, 3),
        "aim": {"events_per_s": 10_000, "ratio_to_floor": 0.4},
        "applied": progress.applied,
        "rejected": progress.rejected,
        "duplicates": progress.duplicates,
    }
