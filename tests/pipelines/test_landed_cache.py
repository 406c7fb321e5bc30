"""Events land parsed and materialize takes them back: once, only for the same text, bounded."""

from __future__ import annotations

import pytest

from benchmarks._lake_workload import generate
from lake.tables import Lake
from memlake.events import serialize_event
from memlake.settings import Settings
from pipelines.follow import run_jobs
from pipelines.landed_cache import LandedEvents, landed_events
from tests.memlake import builders as b
from tests.pipelines.helpers import expected_memories, lake_memories, produce, pure_fold


def test_an_event_is_taken_once_and_only_for_the_text_it_was_parsed_from() -> None:
    cache = LandedEvents()
    event = b.created()
    raw = serialize_event(event).decode()
    cache.remember(("t", 0, 5), raw, event)
    assert cache.take(("t", 0, 5), raw + " ") is None  # another text: parse it
    cache.remember(("t", 0, 5), raw, event)
    assert cache.take(("t", 0, 5), raw) is event
    assert cache.take(("t", 0, 5), raw) is None  # taken already


def test_the_oldest_go_first_past_the_bound() -> None:
    cache = LandedEvents(bound=2)
    event = b.created()
    for offset in range(3):
        cache.remember(("t", 0, offset), "x", event)
    assert len(cache) == 2
    assert cache.take(("t", 0, 0), "x") is None
    assert cache.take(("t", 0, 2), "x") is event


@pytest.mark.integration
def test_materialize_in_the_same_process_takes_what_land_parsed(settings: Settings) -> None:
    events = generate(300, cubes=3, seed=5)
    produce(settings.kafka, events)
    run_jobs(settings)
    topic = settings.kafka.events_topic
    left = [key for key in landed_events().pending() if key[0] == topic]
    assert left == []  # every landed event was taken by materialize, none parsed twice
    assert lake_memories(Lake(settings.lake)) == expected_memories(pure_fold(events))
