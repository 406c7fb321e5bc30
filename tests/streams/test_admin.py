"""memlake's topics on the real broker: created by the project, once, with the log never trimmed."""

from __future__ import annotations

import uuid

import pytest

from infra.broker import LocalBroker
from memlake.settings import KafkaSettings
from streams.admin import describe_topics, ensure_topics

pytestmark = pytest.mark.integration

_KEPT_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}


def _topic_configs(kafka: KafkaSettings, names: list[str]) -> dict[str, dict[str, str]]:
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(**kafka.client_options())
    try:
        found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    finally:
        admin.close()
    return {name: {k: v["value"] for k, v in found["topic"][name].items()} for name in names}


def test_topics_are_created_once_with_the_log_kept_forever(broker: LocalBroker) -> None:
    suffix = uuid.uuid4().hex[:10]
    kafka = KafkaSettings(
        bootstrap=broker.bootstrap,
        events_topic=f"test.events.{suffix}",
        dlq_topic=f"test.dlq.{suffix}",
        partitions=4,
    )
    assert [t.exists for t in describe_topics(kafka)] == [False, False]
    assert ensure_topics(kafka) == [kafka.events_topic, kafka.dlq_topic]
    assert ensure_topics(kafka) == []  # a second start finds them and creates nothing
    events, dlq = describe_topics(kafka)
    assert events.end_offsets == {0: 0, 1: 0, 2: 0, 3: 0}
    assert dlq.end_offsets == {0: 0}
    configs = _topic_configs(kafka, [kafka.events_topic, kafka.dlq_topic])
    for name in (kafka.events_topic, kafka.dlq_topic):
        assert {k: configs[name].get(k) for k in _KEPT_FOREVER} == _KEPT_FOREVER, name
