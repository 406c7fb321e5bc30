"""`memlake up | down | status`: the local Kafka broker and memlake's topics."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from infra.broker import LocalBroker
from memlake.settings import Settings


def register(commands: Any) -> None:
    up = commands.add_parser("up", help="start the local Kafka broker (KRaft) and create memlake's topics")
    up.set_defaults(run=_up)
    down = commands.add_parser("down", help="stop the local Kafka broker")
    down.set_defaults(run=_down)
    topics = commands.add_parser(
        "topics", help="create memlake's topics on the configured cluster (MEMLAKE_KAFKA_BOOTSTRAP)"
    )
    topics.set_defaults(run=_topics)
    status = commands.add_parser("status", help="is the local broker running; topics and consumer lag")
    status.set_defaults(run=_status)


def _up(settings: Settings, args: argparse.Namespace) -> int:
    from streams.admin import ensure_topics

    status = LocalBroker(settings.broker).up()
    print(status)
    created = ensure_topics(settings.kafka)
    for name in created:
        print(f"created topic {name}")
    return 0


def _topics(settings: Settings, args: argparse.Namespace) -> int:
    from streams.admin import ensure_topics, memlake_topics

    created = set(ensure_topics(settings.kafka))
    for spec in memlake_topics(settings.kafka):
        state = "created" if spec.name in created else "exists"
        shape = f"{spec.partitions} partitions, replication {spec.replication_factor}"
        print(f"topic {spec.name}: {state} ({shape})")
    return 0


def _down(settings: Settings, args: argparse.Namespace) -> int:
    stopped = LocalBroker(settings.broker).down()
    print("kafka stopped" if stopped else "kafka was not running")
    return 0


def _status(settings: Settings, args: argparse.Namespace) -> int:
    local = LocalBroker(settings.broker)
    status = local.status()
    print(status)
    # The configured cluster may be the local broker or an existing one (MEMLAKE_KAFKA_BOOTSTRAP):
    # say which, whether or not a local broker happens to run too.
    if settings.kafka.bootstrap != local.bootstrap:
        local_state = "running, not used" if status.running else "not running"
        print(f"local broker {local_state}; memlake writes to {settings.kafka.bootstrap}")
    elif not status.running:
        return 3
    from streams.admin import describe_topics

    events_ends = None
    for topic in describe_topics(settings.kafka):
        if topic.name == settings.kafka.events_topic:
            events_ends = topic.end_offsets
        if not topic.exists or topic.end_offsets is None:
            print(f"topic {topic.name}: not created (run `memlake up`)")
            continue
        count = len(topic.end_offsets)
        print(f"topic {topic.name}: {count} partition{'s' if count != 1 else ''}, {topic.records} records")
        for partition, end in topic.end_offsets.items():
            start = (topic.start_offsets or {}).get(partition, 0)
            trimmed = f" (log starts at {start})" if start else ""
            print(f"  partition {partition}: end offset {end}{trimmed}")
    if events_ends is not None:
        _lake_lag(settings, events_ends)
    return 0


@dataclass(frozen=True)
class LakeLag:
    """How far the lake is behind the log: events not landed yet per partition, and landed
    ones (events versions past `derived`) the derived tables do not reflect yet."""

    not_landed: dict[int, int]
    events_version: int
    derived: int

    @property
    def caught_up(self) -> bool:
        return not any(self.not_landed.values()) and self.derived >= self.events_version

    def line(self) -> str:
        unlanded = sum(self.not_landed.values())
        parts = [f"{unlanded} event{'s' if unlanded != 1 else ''} not landed"] if unlanded else []
        if self.derived < self.events_version:
            parts.append(f"events v{self.derived + 1}..v{self.events_version} not materialized")
        return "the lake is behind the log (" + ", ".join(parts) + "): `memlake materialize` brings it up"


def lake_lag(settings: Settings, ends: dict[int, int] | None = None) -> LakeLag | None:
    """The lake's lag behind the events topic (`ends`: its end offsets, read when not given);
    None while nothing has landed. memlake keeps its offsets in the lake, not in a consumer
    group, so this is its consumer lag. Reads only: creates no table."""
    from lake.schemas import DERIVED_TABLES
    from lake.tables import Lake
    from streams.reader import end_offsets, lag_behind

    lake = Lake(settings.lake)
    topic = settings.kafka.events_topic
    if not lake.exists("events"):
        return None
    ends = end_offsets(settings.kafka, topic) if ends is None else ends
    marks = [lake.watermark(name) for name in DERIVED_TABLES if lake.exists(name)]
    return LakeLag(
        lag_behind(ends, lake.land_offsets(topic, ends)), lake.version("events"), min(marks, default=-1)
    )


def _lake_lag(settings: Settings, ends: dict[int, int]) -> None:
    lag = lake_lag(settings, ends)
    if lag is None:
        print(f"lake at {settings.lake.root}: nothing landed yet (run `memlake materialize`)")
        return
    version, derived = lag.events_version, lag.derived
    behind = "" if derived >= version else " (behind the events: `memlake materialize` brings them up)"
    print(f"lake at {settings.lake.root}: events v{version}, derived tables at v{derived}{behind}")
    print(f"  not landed yet: {sum(lag.not_landed.values())} events")
    for partition, waiting in lag.not_landed.items():
        if waiting:
            print(f"  partition {partition}: {waiting} not landed")
