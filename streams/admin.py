"""Topic administration: memlake creates its own topics, with the log never trimmed."""

from __future__ import annotations

__all__ = ["TopicSpec", "TopicState", "describe_topics", "ensure_topics", "memlake_topics"]

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memlake.errors import TopicsNotReadyError
from memlake.settings import KafkaSettings
from streams.broker_calls import broker_calls

if TYPE_CHECKING:
    from kafka import KafkaAdminClient


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    config: dict[str, str] = field(default_factory=dict)


# The event log is the source of truth: nothing is ever deleted or compacted away.
_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}


def memlake_topics(settings: KafkaSettings) -> list[TopicSpec]:
    return [
        TopicSpec(settings.events_topic, settings.partitions, settings.replication_factor, dict(_FOREVER)),
        TopicSpec(settings.dlq_topic, 1, settings.replication_factor, dict(_FOREVER)),
    ]


def ensure_topics(settings: KafkaSettings, specs: list[TopicSpec] | None = None) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Returns only once every topic that was missing shows all its partitions, each with a
    leader, in the broker's metadata: a caller may produce, consume or ask for offsets at
    once. Raises `TopicsNotReadyError` if that takes longer than the request timeout.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    specs = memlake_topics(settings) if specs is None else specs
    with broker_calls(settings.bootstrap, "connecting an admin client"):
        admin = KafkaAdminClient(**settings.client_options())
    try:
        with broker_calls(settings.bootstrap, "creating topics"):
            existing = set(admin.list_topics())
            missing = [s for s in specs if s.name not in existing]
            created: list[str] = []
            for spec in missing:
                try:
                    admin.create_topics(
                        [
                            NewTopic(
                                spec.name, spec.partitions, spec.replication_factor, topic_configs=spec.config
                            )
                        ]
                    )
                    created.append(spec.name)
                except TopicAlreadyExistsError:
                    continue  # created concurrently by another process: fine
            # A topic created concurrently by another process may have another partition count:
            # for those, any count will do as long as every partition has a leader.
            expected = {s.name: (s.partitions if s.name in created else None) for s in missing}
            _wait_until_ready(admin, expected, settings)
            return created
    finally:
        admin.close()


# Between two metadata requests while new topics settle; usually ready after one or two.
_POLL_S = 0.1


def _wait_until_ready(
    admin: KafkaAdminClient, expected: dict[str, int | None], settings: KafkaSettings
) -> None:
    """Poll metadata until each topic has its partitions (`None`: any number), all with a leader.

    CreateTopics only says the controller accepted the topics; the brokers' metadata caches
    and the partition leaders follow later (seconds on a freshly started KRaft broker), and a
    client asking in between sees no topic or no partitions at all.
    """
    from kafka.errors import KafkaError

    if not expected:
        return
    timeout_s = settings.request_timeout_ms / 1000
    start = time.monotonic()
    while True:
        try:
            described = {t["name"]: t for t in admin.describe_topics(list(expected))}
            pending = {
                name: why
                for name, partitions in expected.items()
                if (why := _not_ready(described.get(name), partitions)) is not None
            }
        except KafkaError as e:  # a metadata request that failed is one more try, up to the deadline
            pending = dict.fromkeys(expected, f"metadata request failed: {e}")
        if not pending:
            return
        waited_s = time.monotonic() - start
        if waited_s >= timeout_s:
            raise TopicsNotReadyError(settings.bootstrap, pending, waited_s=waited_s)
        time.sleep(_POLL_S)


def _not_ready(topic: dict[str, Any] | None, partitions: int | None) -> str | None:
    """Why one topic's metadata does not show it usable yet, or None when it does."""
    from kafka.errors import for_code

    if topic is None:
        return "missing from the metadata response"
    if topic["error_code"] != 0:
        return str(for_code(topic["error_code"]).__name__)
    found = topic["partitions"]
    if not found:
        return "no partitions in metadata yet"
    if partitions is not None and len(found) != partitions:
        return f"{len(found)} of {partitions} partitions in metadata"
    leaderless = sorted(p["partition_index"] for p in found if p["error_code"] != 0 or p["leader_id"] < 0)
    if leaderless:
        return f"no leader yet for partitions {leaderless}"
    return None


@dataclass(frozen=True)
class TopicState:
    """One of memlake's topics as the broker sees it; offsets are None when it does not exist."""

    name: str
    start_offsets: dict[int, int] | None
    end_offsets: dict[int, int] | None

    @property
    def exists(self) -> bool:
        return self.end_offsets is not None

    @property
    def records(self) -> int:
        """Records still in the log (end minus start, over all partitions)."""
        if self.end_offsets is None or self.start_offsets is None:
            return 0
        return sum(end - self.start_offsets.get(p, 0) for p, end in self.end_offsets.items())


def describe_topics(settings: KafkaSettings) -> list[TopicState]:
    """memlake's topics with their first and next offsets per partition."""
    from kafka import KafkaConsumer, TopicPartition

    with broker_calls(settings.bootstrap, "connecting a consumer"):
        consumer = KafkaConsumer(**settings.client_options(), enable_auto_commit=False)
    try:
        with broker_calls(settings.bootstrap, "describing topics"):
            existing = consumer.topics()
            states = []
            for spec in memlake_topics(settings):
                if spec.name not in existing:
                    states.append(TopicState(spec.name, None, None))
                    continue
                tps = [
                    TopicPartition(spec.name, p)
                    for p in sorted(consumer.partitions_for_topic(spec.name) or ())
                ]
                starts = {tp.partition: off for tp, off in consumer.beginning_offsets(tps).items()}
                ends = {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
                states.append(TopicState(spec.name, dict(sorted(starts.items())), dict(sorted(ends.items()))))
            return states
    finally:
        consumer.close()
