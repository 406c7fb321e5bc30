"""verify: recompute a cube's hash chain from Kafka and from the lake and name every difference.

Two checks (`memlake.chain`):

1. The lake against itself: the chain recomputed from the `events` rows
   (their bytes, in log order) must equal the `chain_hash` column. An edited
   row, a dropped row or rows moved around break it from that row on.
2. The lake against Kafka: the cube's records in Kafka (triaged exactly like
   land does, so dead letters are left out) and the lake's rows must be the
   same events with the same bytes in the same order. What is missing,
   unexpected, altered or reordered is named.

Kafka is read only up to what the lake says it landed (later records are
"not landed yet", not missing) and only from what the broker still retains
(older lake rows are covered by check 1 alone).
"""

from __future__ import annotations

__all__ = ["VerifyReport", "verify_cube"]

from dataclasses import dataclass, field

import pyarrow.compute as pc

from lake.scan import scan
from lake.tables import Lake
from memlake.chain import ChainEntry, Discrepancy, chain, check_links, compare, digest
from memlake.settings import Settings
from streams.reader import OffsetRange, end_offsets, read_range, start_offsets
from streams.triage import triage


@dataclass
class VerifyReport:
    cube_id: str
    lake_events: int = 0
    kafka_events: int = 0
    not_landed: int = 0  # in Kafka past what the lake landed: not compared yet
    kafka_retained_from: dict[int, int] = field(default_factory=dict)
    lake_head: str | None = None
    kafka_head: str | None = None
    discrepancies: list[Discrepancy] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.discrepancies

    def summary(self) -> str:
        verdict = "intact" if self.ok else f"{len(self.discrepancies)} discrepancies"
        return (
            f"cube {self.cube_id}: {verdict}; {self.lake_events} events in the lake, "
            f"{self.kafka_events} in Kafka up to what it landed ({self.not_landed} more not landed yet); "
            f"head {self.lake_head}"
        )


def _partition_of(cube_id: str, partitions: list[int]) -> int:
    """Where the producer's partitioner (murmur2 of the key, as the Java client) puts a cube."""
    from kafka.partitioner.default import murmur2

    ordered = sorted(partitions)
    return ordered[(int(murmur2(cube_id.encode())) & 0x7FFFFFFF) % len(ordered)]


def verify_cube(settings: Settings, cube_id: str) -> VerifyReport:
    lake = Lake(settings.lake)
    topic = settings.kafka.events_topic
    report = VerifyReport(cube_id)
    columns = ["topic", "partition", "offset", "event_id", "event_json", "chain_hash"]
    if lake.exists("events"):
        data = scan(
            lake.table("events"), lake.spec("events"), columns=columns, filter=pc.field("cube_id") == cube_id
        )
        rows = sorted(data.to_pylist(), key=lambda r: (r["topic"], r["partition"], r["offset"]))
    else:
        rows = []
    lake_entries = [
        ChainEntry(
            r["event_id"],
            digest((r["event_json"] or "").encode()),
            f"p{r['partition']}@{r['offset']}",
            r["chain_hash"],
        )
        for r in rows
    ]
    report.lake_events = len(lake_entries)
    report.discrepancies.extend(check_links(cube_id, lake_entries))
    if rows:
        report.lake_head = rows[-1]["chain_hash"]

    ends = end_offsets(settings.kafka, topic)
    starts = start_offsets(settings.kafka, topic)
    report.kafka_retained_from = {p: o for p, o in starts.items() if o > 0}
    landed = lake.land_offsets(topic, ends) if lake.exists("events") else {}
    partitions = {_partition_of(cube_id, list(ends))} | {
        int(r["partition"]) for r in rows if r["topic"] == topic
    }
    kafka_records = []
    for partition in sorted(partitions):
        last = landed.get(partition, -1)
        span = OffsetRange(topic, partition, starts.get(partition, 0), last + 1)
        for record in read_range(settings.kafka, span, timeout_s=settings.pipelines.read_timeout_s):
            if record.key == cube_id.encode():
                kafka_records.append(record)
        tail = OffsetRange(topic, partition, max(last + 1, starts.get(partition, 0)), ends.get(partition, 0))
        good_tail, _ = triage(
            (
                r
                for r in read_range(settings.kafka, tail, timeout_s=settings.pipelines.read_timeout_s)
                if r.key == cube_id.encode()
            ),
        )
        report.not_landed += sum(1 for _, event in good_tail if event.cube_id == cube_id)
    good, _ = triage(kafka_records)
    kafka_entries = [
        ChainEntry(event.event_key, digest(record.value or b""), f"p{record.partition}@{record.offset}")
        for record, event in good
        if event.cube_id == cube_id
    ]
    report.kafka_events = len(kafka_entries)
    retained = [
        entry
        for entry, row in zip(lake_entries, rows, strict=True)
        if row["topic"] != topic or int(row["offset"]) >= starts.get(int(row["partition"]), 0)
    ]
    report.discrepancies.extend(compare(kafka_entries, retained))
    if kafka_entries and not report.kafka_retained_from:
        kafka_links = chain(
            cube_id, (record.value or b"" for record, event in good if event.cube_id == cube_id)
        )
        report.kafka_head = kafka_links[-1]
    return report
