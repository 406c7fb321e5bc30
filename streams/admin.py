"""Topic administration: memlake creates its own topics, with the log never trimmed."""

from __future__ import annotations

__all__ = ["TopicSpec", "TopicState", "describe_topics", "ensure_topics", "memlake_topics"]

from dataclasses import dataclass, field

from memlake.errors import BrokerUnavailableError
from memlake.settings import KafkaSettings


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
    """Create the topics that do not exist yet; return the names created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    specs = memlake_topics(settings) if specs is None else specs
    try:
        admin = KafkaAdminClient(**settings.client_options())
    except (KafkaError, OSError) as e:
        raise BrokerUnavailableError(settings.bootstrap, str(e)) from e
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created: list[str] = []
        for spec in missing:
            try:
                admin.create_topics(
                    [NewTopic(spec.name, spec.partitions, spec.replication_factor, topic_configs=spec.config)]
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:
                continue  # created concurrently by another process: fine
        return created
    except KafkaError as e:
        raise BrokerUnavailableError(settings.bootstrap, str(e)) from e
    finally:
        admin.close()


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
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(**settings.client_options(), enable_auto_commit=False)
    except (KafkaError, OSError) as e:
        raise BrokerUnavailableError(settings.bootstrap, str(e)) from e
    try:
        existing = consumer.topics()
        states = []
        for spec in memlake_topics(settings):
            if spec.name not in existing:
                states.append(TopicState(spec.name, None, None))
                continue
            tps = [
                TopicPartition(spec.name, p) for p in sorted(consumer.partitions_for_topic(spec.name) or ())
            ]
            starts = {tp.partition: off for tp, off in consumer.beginning_offsets(tps).items()}
            ends = {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
            states.append(TopicState(spec.name, dict(sorted(starts.items())), dict(sorted(ends.items()))))
        return states
    except KafkaError as e:
        raise BrokerUnavailableError(settings.bootstrap, str(e)) from e
    finally:
        consumer.close()
