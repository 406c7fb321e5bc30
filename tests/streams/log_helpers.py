"""Reading a whole topic back, for integration tests."""

from __future__ import annotations

from memlake.events import Event, parse_event
from memlake.settings import KafkaSettings
from streams.reader import Record, plan_ranges, read_range


def read_all(kafka: KafkaSettings, topic: str | None = None) -> list[Record]:
    """Every record of every partition, partition by partition, in offset order."""
    spans = plan_ranges(kafka, topic or kafka.events_topic, after={})
    return [record for span in spans for record in read_range(kafka, span)]


def read_events(kafka: KafkaSettings) -> list[tuple[Record, Event]]:
    return [(r, parse_event(r.value or b"")) for r in read_all(kafka)]
