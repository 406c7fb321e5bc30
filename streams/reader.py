"""Bounded readers of offset ranges: what batch jobs (Beam) read from the log.

A job decides the range first (`end_offsets` now, its stored watermark as
the start) and then reads exactly `[start, end)` of each partition, so that
a run is repeatable and never races with new writes.
"""

from __future__ import annotations

__all__ = [
    "Record",
    "OffsetRange",
    "end_offsets",
    "start_offsets",
    "read_range",
    "plan_ranges",
    "consumer_lag",
    "lag_behind",
]

import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

from memlake.errors import BrokerUnavailableError
from memlake.settings import KafkaSettings
from streams.broker_calls import broker_calls
from streams.consumer_pool import borrow


@dataclass(frozen=True, slots=True)
class Record:
    """One record of the log, as read: where it sits and its raw bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """`[start, end)` of one partition."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


def _partitions(consumer: Any, topic: str, settings: KafkaSettings) -> list[int]:
    deadline = time.monotonic() + settings.request_timeout_ms / 1000
    while time.monotonic() < deadline:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        time.sleep(0.1)
    raise BrokerUnavailableError(settings.bootstrap, f"topic {topic!r} does not exist or has no partitions")


def end_offsets(settings: KafkaSettings, topic: str) -> dict[int, int]:
    """The next offset to be written, per partition (the high watermark)."""
    from kafka import TopicPartition

    with borrow(settings) as consumer, broker_calls(settings.bootstrap, f"end offsets of {topic!r}"):
        tps = [TopicPartition(topic, p) for p in _partitions(consumer, topic, settings)]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}


def start_offsets(settings: KafkaSettings, topic: str) -> dict[int, int]:
    """The first offset still in the log, per partition."""
    from kafka import TopicPartition

    with borrow(settings) as consumer, broker_calls(settings.bootstrap, f"start offsets of {topic!r}"):
        tps = [TopicPartition(topic, p) for p in _partitions(consumer, topic, settings)]
        return {tp.partition: off for tp, off in consumer.beginning_offsets(tps).items()}


def plan_ranges(
    settings: KafkaSettings,
    topic: str,
    *,
    after: Mapping[int, int],
    max_per_partition: int | None = None,
) -> list[OffsetRange]:
    """The ranges still to read: from just after `after[p]` (the last offset applied,
    -1 or absent for none) to the current end, optionally capped per partition."""
    ends = end_offsets(settings, topic)
    ranges = []
    for partition, high in sorted(ends.items()):
        start = after.get(partition, -1) + 1
        end = high if max_per_partition is None else min(high, start + max_per_partition)
        if end > start:
            ranges.append(OffsetRange(topic, partition, start, end))
    return ranges


def read_range(
    settings: KafkaSettings, span: OffsetRange, *, timeout_s: float = 60.0, check_crcs: bool = True
) -> Generator[Record, None, None]:
    """Every record of `[start, end)` of one partition, in offset order.

    Offsets missing inside the range (transaction markers, compacted records)
    are skipped; the read ends at the first record at or past `end`.
    """
    from kafka import TopicPartition

    if span.size == 0:
        return
    # check_crcs=False skips the client's CRC32C of each record batch: the broker checked it on
    # append, and without the `crc32c` package kafka-python computes it in pure Python.
    # A pooled client (streams.consumer_pool): it goes back to the pool only when the whole
    # range was read; a failed or abandoned read closes it.
    with (
        borrow(
            settings, max_poll_records=2000, fetch_max_bytes=32 * 1024 * 1024, check_crcs=check_crcs
        ) as consumer,
        broker_calls(settings.bootstrap, f"reading {span.topic}[{span.partition}]"),
    ):
        tp = TopicPartition(span.topic, span.partition)
        consumer.assign([tp])
        consumer.seek(tp, span.start)
        deadline = time.monotonic() + timeout_s
        position = span.start
        while position < span.end:
            batch = consumer.poll(timeout_ms=500).get(tp, [])
            if not batch:
                if time.monotonic() > deadline:
                    raise BrokerUnavailableError(
                        settings.bootstrap,
                        f"{span.topic}[{span.partition}] stopped at offset {position} before {span.end}",
                    )
                continue
            deadline = time.monotonic() + timeout_s
            for message in batch:
                if message.offset >= span.end:
                    return
                position = message.offset + 1
                yield Record(
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    key=message.key,
                    value=message.value,
                    timestamp_ms=message.timestamp,
                )
            # The consumer may have skipped offsets (markers); trust its position.
            position = max(position, consumer.position(tp))


def consumer_lag(settings: KafkaSettings, topic: str, *, applied: Mapping[int, int]) -> dict[int, int]:
    """Events not yet applied, per partition, given the last offset applied per partition."""
    return lag_behind(end_offsets(settings, topic), applied)


def lag_behind(ends: Mapping[int, int], applied: Mapping[int, int]) -> dict[int, int]:
    """Records past the last offset applied per partition, given each partition's end offset."""
    return {p: max(0, end - (applied.get(p, -1) + 1)) for p, end in ends.items()}
