"""Cubes with used memories in a real lake: events to the test broker, then land and materialize."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from memlake.events import (
    CubeCreated,
    Event,
    MemoryAccessed,
    MemoryAdded,
    MemoryUpdated,
    new_event,
)
from memlake.model import Actor, ActorKind, utcnow
from memlake.settings import Settings
from pipelines.land import run_land
from pipelines.materialize import run_materialize
from streams.producer import EventProducer

OWNER = Actor(kind=ActorKind.USER, id="alice")


@dataclass(frozen=True)
class Fact:
    memory_id: str
    text: str
    tags: tuple[str, ...] = ()
    reads: int = 0
    pinned: bool = False


@dataclass
class Workload:
    events: list[Event] = field(default_factory=list)

    def cube(self, cube_id: str, facts: Sequence[Fact], *, at: datetime | None = None) -> Workload:
        now = at or utcnow() - timedelta(hours=1)
        self.events.append(
            new_event(CubeCreated, cube_id=cube_id, actor=OWNER, payload={"name": cube_id}, occurred_at=now)
        )
        for i, fact in enumerate(facts):
            self.events.append(
                new_event(
                    MemoryAdded,
                    cube_id=cube_id,
                    memory_id=fact.memory_id,
                    actor=OWNER,
                    payload={"content": {"text": fact.text}, "tags": list(fact.tags), "pinned": fact.pinned},
                    occurred_at=now + timedelta(seconds=i + 1),
                )
            )
        for n in range(max((f.reads for f in facts), default=0)):
            read = [f.memory_id for f in facts if f.reads > n]
            self.events.append(
                new_event(
                    MemoryAccessed,
                    cube_id=cube_id,
                    actor=OWNER,
                    payload={"memory_ids": read, "request_kind": "chat"},
                    occurred_at=now + timedelta(minutes=1, seconds=n),
                )
            )
        return self

    def update(self, cube_id: str, memory_id: str, text: str) -> Workload:
        self.events.append(
            new_event(
                MemoryUpdated,
                cube_id=cube_id,
                memory_id=memory_id,
                actor=OWNER,
                payload={"content": {"text": text}},
            )
        )
        return self


def produce(settings: Settings, events: Iterable[Event]) -> None:
    with EventProducer(settings.kafka) as producer:
        producer.send_many(list(events))


def sync_lake(settings: Settings) -> None:
    """Land every event on the topic and materialize until the tables are current."""
    while run_land(settings).events:
        pass
    while run_materialize(settings).plan is not None:
        pass


def topic_events(settings: Settings) -> list[Event]:
    """Every event on the test topic, in partition/offset order."""
    from kafka import KafkaConsumer, TopicPartition

    from memlake.events import parse_event

    consumer = KafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False)
    try:
        parts = [TopicPartition(settings.kafka.events_topic, p) for p in range(settings.kafka.partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends: Mapping[TopicPartition, int] = consumer.end_offsets(parts)
        out: list[Event] = []
        while any(consumer.position(p) < ends[p] for p in parts):
            for records in consumer.poll(timeout_ms=1000).values():
                out.extend(parse_event(r.value) for r in records)
        return out
    finally:
        consumer.close()
