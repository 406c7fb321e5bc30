"""Topic administration: memlake creates its own topics, with the log never trimmed."""

from __future__ import annotations

__all__ = ["TopicSpec", "ensure_topics", "memlake_topics"]

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
