"""memlake's topics on the real broker: created by the project, once, with the log never trimmed."""

from __future__ import annotations

import pytest

from infra.broker import LocalBroker
from memlake.errors import TopicsNotReadyError
from memlake.settings import KafkaSettings
from streams.admin import _wait_until_ready, describe_topics, ensure_topics
from tests.conftest import own_topics

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
    kafka = own_topics(broker, partitions=4, create=False)
    assert [t.exists for t in describe_topics(kafka)] == [False, False]
    assert ensure_topics(kafka) == [kafka.events_topic, kafka.dlq_topic]
    assert ensure_topics(kafka) == []  # a second start finds them and creates nothing
    events, dlq = describe_topics(kafka)
    assert events.end_offsets == {0: 0, 1: 0, 2: 0, 3: 0}
    assert dlq.end_offsets == {0: 0}
    configs = _topic_configs(kafka, [kafka.events_topic, kafka.dlq_topic])
    for name in (kafka.events_topic, kafka.dlq_topic):
        assert {k: configs[name].get(k) for k in _KEPT_FOREVER} == _KEPT_FOREVER, name


@pytest.mark.parametrize("partitions", [1, 3, 8, 12])
def test_created_topics_are_usable_the_moment_ensure_topics_returns(
    broker: LocalBroker, partitions: int
) -> None:
    """No sleep, no retry: every partition already has offsets (on a fresh broker the metadata
    lagged the creation, and a describe right after saw no topic at all)."""
    kafka = own_topics(broker, partitions=partitions)
    events, dlq = describe_topics(kafka)
    assert events.end_offsets == dict.fromkeys(range(partitions), 0)
    assert dlq.end_offsets == {0: 0}


def test_topics_that_never_appear_are_named_in_a_typed_error(broker: LocalBroker) -> None:
    from kafka import KafkaAdminClient

    kafka = own_topics(broker, create=False).model_copy(update={"request_timeout_ms": 1000})
    admin = KafkaAdminClient(**kafka.client_options())
    try:
        with pytest.raises(TopicsNotReadyError) as raised:
            _wait_until_ready(admin, {kafka.events_topic: 2}, kafka)
    finally:
        admin.close()
    assert raised.value.topics == (kafka.events_topic,)
    assert "UnknownTopicOrPartitionError" in raised.value.pending[kafka.events_topic]
    assert raised.value.waited_s >= 1.0
