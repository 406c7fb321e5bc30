"""land: Kafka offset ranges -> the `events` table, exactly once.

The graph: the batch's offset ranges (planned when the graph runs, from the
offsets already landed, stored as Delta transaction ids; or given, to replay
them) -> groups of ranges, spread over workers -> a reading `ParDo`
(kafka-python, bounded ranges) -> triage (valid events become rows, the rest
dead letters) -> dead letters to the dead-letter topic -> one commit of the
rows carrying `Transaction("land:<topic>:<partition>", last offset)` per
partition. The commit waits for the dead letters to be confirmed, so a
crash can send a dead letter twice (at-least-once, each carries its source
offset) but never lose one; the events themselves land exactly once.
"""

from __future__ import annotations

__all__ = ["Land", "LandResult", "RawRecord", "plan_land", "run_land"]

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics.metric import Metrics

from lake.rows import event_row, to_table
from lake.schemas import EVENTS
from lake.tables import Lake
from lake.writer import CommitResult, TableWriter
from memlake.settings import KafkaSettings, LakeSettings, Settings
from pipelines.job_process import JobDoFn
from pipelines.landed_cache import landed_events
from pipelines.options import Spread, metric, new_pipeline, pipeline_options, step_errors
from streams.dead_letters import DeadLetter, DeadLetterWriter
from streams.reader import OffsetRange, Record, end_offsets, read_range
from streams.triage import triage

_NS = "memlake.land"
_RECORDS_PER_GROUP = 20_000
# A record between read and triage: (topic, partition, offset, key, value, timestamp ms).
# Plain tuples, because Beam sizes the first elements of every bundle by encoding
# them, and a dataclass record is pickled one by one (a second per 40k records here).
RawRecord = tuple[str, int, int, bytes | None, bytes | None, int]


@dataclass(frozen=True)
class LandResult:
    ranges: tuple[OffsetRange, ...]
    events: int
    dead_letters: int
    events_version: int  # the events table's version after the run

    @property
    def records(self) -> int:
        return sum(r.size for r in self.ranges)


class ReadRanges(JobDoFn):
    """A group of offset ranges -> lists of records (chunks keep per-element overhead low).

    The ranges of a group are read one after the other on one pooled consumer
    (streams.consumer_pool): decoding records holds the GIL, and six reading
    threads took 1.6-2.8x the wall time of one here (2,000 and 15,000 records).
    Groups spread over workers.
    """

    def __init__(self, kafka: KafkaSettings, *, chunk: int = 2000, timeout_s: float = 60.0) -> None:
        self._kafka = kafka
        self._chunk = chunk
        self._timeout_s = timeout_s
        self._records = Metrics.counter(_NS, "records")

    def process(self, spans: list[OffsetRange]) -> Iterator[list[RawRecord]]:
        chunk: list[RawRecord] = []
        check_crcs = _crc32c_in_c()
        for span in spans:
            for r in read_range(self._kafka, span, timeout_s=self._timeout_s, check_crcs=check_crcs):
                chunk.append((r.topic, r.partition, r.offset, r.key, r.value, r.timestamp_ms))
                if len(chunk) >= self._chunk:
                    self._records.inc(len(chunk))
                    yield chunk
                    chunk = []
        if chunk:
            self._records.inc(len(chunk))
            yield chunk


class Triage(JobDoFn):
    """Records -> an Arrow table of valid events (main) and dead letters (tagged "dead")."""

    DEAD = "dead"

    def __init__(self) -> None:
        self._dead = Metrics.counter(_NS, "dead_letters")

    def process(self, raw: list[RawRecord]) -> Iterator[Any]:
        good, bad = triage((Record(*r) for r in raw), stage="land")
        landed = landed_events()
        rows = []
        for record, event in good:
            row = event_row(
                event,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                timestamp_ms=record.timestamp_ms,
                raw=record.value or b"",
            )
            # Materialize, if it runs in this process, takes the parsed event back.
            landed.remember((record.topic, record.partition, record.offset), row["event_json"], event)
            rows.append(row)
        yield to_table(EVENTS, rows)
        self._dead.inc(len(bad))
        for letter in bad:
            yield beam.pvalue.TaggedOutput(self.DEAD, letter)


class CommitEvents(JobDoFn):
    """The batch's ranges, with every table and dead letter of it -> dead letters sent, then
    one Delta commit with a transaction id per partition.

    Yields one result even when there was nothing to land, so that a step after
    it (materialize, in the same graph) runs once per batch either way. Tables
    and dead letters come as side inputs: the one ranges element is always
    there, and no combining step (two stages each under the DirectRunner) is paid.
    """

    def __init__(
        self,
        lake: LakeSettings,
        kafka: KafkaSettings,
        *,
        send_dead_letters: bool = True,
        writer: str | None = None,
    ) -> None:
        self._lake = lake
        self._kafka = kafka
        self._send = send_dead_letters
        self._writer = writer
        self._landed = Metrics.counter(_NS, "events")

    def _send_dead_letters(self, letters: list[DeadLetter]) -> None:
        # Sent and confirmed before the commit: a crash can send one twice (each
        # carries its source offset), never lose one. A rebuild reads records that
        # were dead-lettered already: it sends nothing.
        if letters and self._send:
            ordered = sorted(letters, key=lambda d: (d.source_partition or 0, d.source_offset or 0))
            with DeadLetterWriter(self._kafka) as writer:
                writer.send(ordered)

    def process(
        self, ranges: tuple[OffsetRange, ...], tables: list[pa.Table], letters: list[DeadLetter]
    ) -> Iterator[CommitResult]:
        if not ranges:
            yield CommitResult("events", 0, None, "nothing new in the topic")
            return
        self._send_dead_letters(letters)
        offsets = {r.partition: r.end - 1 for r in ranges}
        parts = [t for t in tables if t.num_rows]
        data = pa.concat_tables(parts) if parts else EVENTS.schema.empty_table()
        result = TableWriter(Lake(self._lake)).commit_events(
            data,
            topic=self._kafka.events_topic,
            offsets=offsets,
            dead_letters=len(letters),
            writer=self._writer,
        )
        self._landed.inc(result.rows)
        yield result


class PlanLand(beam.DoFn):
    """The batch's offset ranges: the ones given, or the next ones after what has landed."""

    def __init__(self, settings: Settings, ranges: Sequence[OffsetRange] | None) -> None:
        self._settings = settings
        self._ranges = tuple(ranges) if ranges is not None else None
        self._records = Metrics.counter(_NS, "planned_records")

    def process(self, _: object) -> Iterator[tuple[OffsetRange, ...]]:
        if self._ranges is not None:
            ranges = self._ranges
        else:
            lake = Lake(self._settings.lake)
            lake.ensure("events")
            ranges = tuple(plan_land(self._settings, lake))
        self._records.inc(sum(r.size for r in ranges))
        yield ranges


class Land(beam.PTransform):  # type: ignore[type-arg]
    """The land graph: the offset ranges given, or (`None`) the next ones, planned as it runs.
    `writer` names the run in its commit's metadata (`lake.tables.WRITER_KEY`)."""

    def __init__(
        self,
        settings: Settings,
        ranges: Sequence[OffsetRange] | None = None,
        *,
        send_dead_letters: bool = True,
        writer: str | None = None,
    ) -> None:
        super().__init__()
        self._settings = settings
        self._ranges = ranges
        self._send = send_dead_letters
        self._writer = writer

    def expand(self, pbegin: Any) -> Any:
        s = self._settings
        ranges = pbegin | "Start" >> beam.Create([None]) | "Plan" >> beam.ParDo(PlanLand(s, self._ranges))
        chunks = (
            ranges
            | "Ranges" >> beam.FlatMap(_groups)
            | "Spread" >> Spread()
            | "Read" >> beam.ParDo(ReadRanges(s.kafka, timeout_s=s.pipelines.read_timeout_s))
        )
        triaged = chunks | "Triage" >> beam.ParDo(Triage()).with_outputs(Triage.DEAD, main="events")
        return ranges | "Commit" >> beam.ParDo(
            CommitEvents(s.lake, s.kafka, send_dead_letters=self._send, writer=self._writer),
            tables=beam.pvalue.AsList(triaged["events"]),
            letters=beam.pvalue.AsList(triaged[Triage.DEAD]),
        )


def _crc32c_in_c() -> bool:
    """Whether kafka-python can check record CRCs in C (the `crc32c` package).

    In pure Python the check costs about 250 µs per record, more than validating
    the event; the broker already checked every batch's CRC when it was appended.
    """
    from kafka.record import util

    return util.crc32c_c is not None


def _groups(ranges: Sequence[OffsetRange], *, records: int = _RECORDS_PER_GROUP) -> list[list[OffsetRange]]:
    """Ranges in groups of about `records` records: a group is one element (one worker)."""
    if not ranges:
        return []
    total = sum(r.size for r in ranges)
    count = max(1, min(len(ranges), math.ceil(total / records)))
    return [list(ranges[i::count]) for i in range(count)]


def plan_land(settings: Settings, lake: Lake) -> list[OffsetRange]:
    """The next batch: from just after the stored offsets, at most `batch_max_events` records."""
    topic = settings.kafka.events_topic
    ends = end_offsets(settings.kafka, topic)
    stored = lake.land_offsets(topic, ends)
    per_partition = max(1, math.ceil(settings.pipelines.batch_max_events / max(1, len(ends))))
    ranges = []
    for partition, high in sorted(ends.items()):
        start = stored.get(partition, -1) + 1
        end = min(high, start + per_partition)
        if end > start:
            ranges.append(OffsetRange(topic, partition, start, end))
    return ranges


def run_land(
    settings: Settings,
    *,
    ranges: Sequence[OffsetRange] | None = None,
    beam_args: Sequence[str] = (),
    send_dead_letters: bool = True,
) -> LandResult:
    """Land one batch (the planned one, or the `ranges` given, e.g. to replay them)."""
    lake = Lake(settings.lake)
    lake.ensure("events")
    spans = list(ranges) if ranges is not None else plan_land(settings, lake)
    if not spans:
        return LandResult((), 0, 0, lake.version("events"))
    with step_errors(), new_pipeline(pipeline_options(settings.pipelines, beam_args)) as pipeline:
        _ = pipeline | "Land" >> Land(settings, spans, send_dead_letters=send_dead_letters)
    result = pipeline.result
    return LandResult(
        tuple(spans),
        metric(result, _NS, "events"),
        metric(result, _NS, "dead_letters"),
        lake.version("events"),
    )
