"""Producer throughput: memlake's SDK (validated events) against kafka-python sending the same bytes raw.

Both sides write the same `memory.added` events, keyed by cube, to fresh
topics of the same broker, with the same producer settings (idempotent,
acks=all, the same batching), and wait for every acknowledgement. The SDK
side builds and validates each event (pydantic), checks its size and
serialises it; the raw side sends bytes serialised beforehand, so the ratio
is the price of validation on the write path. Rounds alternate (raw, SDK,
raw, SDK...) so that a busy machine slows both alike; the best round of each
is reported. Both are bound by this process's CPU (kafka-python is pure
Python), so the CPU seconds per event of each side are reported too: on a
machine shared with other work they are steadier than the wall-clock rates.
"""

from __future__ import annotations

__all__ = ["run", "PROFILES"]

import gc
import os
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._lake_bench import bench_settings
from memlake.events import serialize_event
from memlake.settings import Settings
from streams.producer import producer_options
from streams.reader import end_offsets
from streams.sdk import MemlakeClient


@dataclass(frozen=True)
class _Profile:
    events: int
    cubes: int
    rounds: int


PROFILES: dict[str, _Profile] = {
    "tiny": _Profile(events=2_000, cubes=16, rounds=1),
    "quick": _Profile(events=20_000, cubes=64, rounds=3),
    "full": _Profile(events=300_000, cubes=256, rounds=3),
}

_WORDS = [
    "prefers",
    "green",
    "tea",
    "mornings",
    "meeting",
    "moved",
    "to",
    "thursday",
    "allergic",
    "peanuts",
    "flight",
    "lands",
    "hotel",
    "near",
    "station",
    "likes",
    "jazz",
    "budget",
    "approved",
    "sister",
    "visits",
    "in",
    "may",
    "project",
    "deadline",
    "vegetarian",
    "runs",
    "on",
    "weekends",
    "reads",
    "science",
    "fiction",
    "works",
    "remotely",
    "from",
    "lyon",
]


@dataclass(frozen=True)
class _Item:
    cube_id: str
    memory_id: str
    text: str
    tags: tuple[str, ...]
    priority: float


def _workload(profile: _Profile, seed: int) -> list[_Item]:
    rng = random.Random(seed)
    items = []
    for i in range(profile.events):
        words = rng.choices(_WORDS, k=rng.randint(8, 30))
        items.append(
            _Item(
                cube_id=f"cube-{rng.randrange(profile.cubes):04d}",
                memory_id=f"m-{seed}-{i:07d}",
                text=" ".join(words).capitalize() + ".",
                tags=tuple(rng.sample(["preference", "plan", "fact", "person", "travel"], k=2)),
                priority=round(rng.random(), 3),
            )
        )
    return items


def _sdk_round(settings: Settings, items: list[_Item]) -> float:
    """Build, validate and send every event through the SDK; seconds until all are acknowledged."""
    with MemlakeClient(settings, actor="service:bench", product="bench") as client:
        client.send_many([client.build_add_memory(items[0].cube_id, "warm-up", memory_id="warm-up")])
        began = time.perf_counter()
        events = (
            client.build_add_memory(
                item.cube_id, item.text, memory_id=item.memory_id, tags=item.tags, priority=item.priority
            )
            for item in items
        )
        deliveries = client.send_many(events, chunk=5000)
        seconds = time.perf_counter() - began
    assert len(deliveries) == len(items)
    return seconds


def _raw_round(settings: Settings, payloads: list[tuple[bytes, bytes]]) -> float:
    """The same bytes through a bare kafka-python producer with the SDK's producer settings."""
    from kafka import KafkaProducer

    s = settings.kafka
    producer = KafkaProducer(**producer_options(s))
    try:
        producer.send(s.events_topic, key=payloads[0][0], value=payloads[0][1]).get(timeout=60)
        began = time.perf_counter()
        for start in range(0, len(payloads), 5000):
            futures = [
                producer.send(s.events_topic, key=k, value=v) for k, v in payloads[start : start + 5000]
            ]
            producer.flush(timeout=120)
            for future in futures:
                future.get(timeout=120)
        return time.perf_counter() - began
    finally:
        producer.close(timeout=10)


def _written(settings: Settings) -> int:
    return sum(end_offsets(settings.kafka, settings.kafka.events_topic).values())


def run(profile: str, out_dir: Path) -> dict[str, Any]:
    shape = PROFILES[profile]
    items = _workload(shape, seed=11)
    # The raw side sends exactly the bytes the SDK would: built once, up front, untimed.
    builder = MemlakeClient(bench_settings(out_dir), actor="service:bench", product="bench")
    payloads = [
        (
            item.cube_id.encode(),
            serialize_event(
                builder.build_add_memory(
                    item.cube_id, item.text, memory_id=item.memory_id, tags=item.tags, priority=item.priority
                )
            ),
        )
        for item in items
    ]
    builder.close()
    mean_bytes = sum(len(v) for _, v in payloads) / len(payloads)
    # The inputs of both sides live through every round: keep them out of the cyclic
    # collector's scans, so that neither side pays for the other's data.
    gc.collect()
    gc.freeze()

    raw_s: list[float] = []
    sdk_s: list[float] = []
    raw_cpu: list[float] = []
    sdk_cpu: list[float] = []
    load_before = os.getloadavg()[0]
    for _ in range(shape.rounds):
        raw_settings = bench_settings(out_dir)
        cpu = time.process_time()
        raw_s.append(_raw_round(raw_settings, payloads))
        raw_cpu.append(time.process_time() - cpu)
        assert _written(raw_settings) == len(items) + 1
        sdk_settings = bench_settings(out_dir)
        cpu = time.process_time()
        sdk_s.append(_sdk_round(sdk_settings, items))
        sdk_cpu.append(time.process_time() - cpu)
        assert _written(sdk_settings) == len(items) + 1

    raw_rate = len(items) / min(raw_s)
    sdk_rate = len(items) / min(sdk_s)
    ratio = sdk_rate / raw_rate
    # The median round as well as the best: on a shared machine one lucky round can flatter a side.
    median_ratio = statistics.median(raw_s) / statistics.median(sdk_s)
    raw_cpu_us = min(raw_cpu) / len(items) * 1e6
    sdk_cpu_us = min(sdk_cpu) / len(items) * 1e6
    gc.unfreeze()
    return {
        "summary": (
            f"SDK {sdk_rate:,.0f} events/s vs raw kafka-python {raw_rate:,.0f} events/s: "
            f"{ratio:.0%} of raw ({len(items):,} events of {mean_bytes:.0f} B, best of {shape.rounds}; "
            f"median rounds {median_ratio:.0%}); "
            f"CPU per event {sdk_cpu_us:.0f} us vs {raw_cpu_us:.0f} us ({raw_cpu_us / sdk_cpu_us:.0%})"
        ),
        "events": len(items),
        "cubes": shape.cubes,
        "mean_event_bytes": round(mean_bytes, 1),
        "rounds": shape.rounds,
        "throughput": {"sdk": round(sdk_rate, 1), "raw": round(raw_rate, 1)},
        "ratio_sdk_to_raw": round(ratio, 3),
        "ratio_sdk_to_raw_median": round(median_ratio, 3),
        "seconds": {"sdk": [round(s, 3) for s in sdk_s], "raw": [round(s, 3) for s in raw_s]},
        "cpu_us_per_event": {"sdk": round(sdk_cpu_us, 1), "raw": round(raw_cpu_us, 1)},
        "cpu_ratio_raw_to_sdk": round(raw_cpu_us / sdk_cpu_us, 3),
        "load_average": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "aim": {"ratio_sdk_to_raw": 0.7},
    }
