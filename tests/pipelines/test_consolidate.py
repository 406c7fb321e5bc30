"""The consolidation job on the real broker, real Delta tables and the real embedding model."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lake.tables import Lake
from memlake.cli import main
from memlake.cli.governance import embed_factory
from memlake.events import (
    CubeCreated,
    CubeCreatedPayload,
    Event,
    MemoryAccessed,
    MemoryAccessedPayload,
    MemoryAdded,
    MemoryAddedPayload,
    new_event,
)
from memlake.model import Actor, ActorKind, Content, MemoryStatus, Policy, SourceRef
from memlake.settings import Settings
from pipelines.consolidate import run_consolidate
from pipelines.follow import run_jobs
from pipelines.hot_memories import HotMemoriesTable
from streams.reader import end_offsets
from tests.pipelines.cli_env import use_settings
from tests.pipelines.helpers import lake_memories, produce

pytestmark = pytest.mark.integration

OWNER = Actor(kind=ActorKind.USER, id="owner")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
AS_OF = T0 + timedelta(days=59)


def _add(cube: str, memory_id: str, text: str, day: float, **payload: Any) -> Event:
    return new_event(
        MemoryAdded,
        cube_id=cube,
        memory_id=memory_id,
        actor=OWNER,
        occurred_at=T0 + timedelta(days=day),
        payload=MemoryAddedPayload(content=Content(text=text), **payload),
    )


def workload(cube: str) -> list[Event]:
    policy = Policy(decay_half_life_days=10.0, archive_below_priority=0.05)
    events: list[Event] = [
        new_event(
            CubeCreated,
            cube_id=cube,
            actor=OWNER,
            occurred_at=T0,
            payload=CubeCreatedPayload(name="consolidation", policy=policy),
        ),
        _add(cube, "expiring", "The parking code is 4711 until noon.", 0, ttl_seconds=3600, priority=0.9),
        _add(cube, "cold", "The user once visited a museum.", 0, priority=0.1),
        _add(cube, "tea1", "The user likes green tea.", 50),
        _add(cube, "tea2", "the user likes GREEN tea", 51),
        _add(cube, "rex1", "Alice has a dog named Rex.", 52),
        _add(cube, "rex2", "Alice owns a dog called Rex.", 53),
        _add(cube, "paris", "The user lives in Paris.", 54, tags=("key:home_city",)),
        _add(cube, "berlin", "The user lives in Berlin.", 55, tags=("key:home_city",)),
        _add(cube, "queen", "The user's favourite band is Queen.", 56),
        _add(cube, "chess", "Bob plays chess on Sundays.", 56),
    ]
    for hours in (1, 2, 3):
        events.append(
            new_event(
                MemoryAccessed,
                cube_id=cube,
                actor=OWNER,
                occurred_at=T0 + timedelta(days=57, hours=hours),
                payload=MemoryAccessedPayload(memory_ids=("queen",), request_kind="search"),
            )
        )
    return events


def _statuses(lake: Lake, cube: str) -> dict[str, MemoryStatus]:
    return {m: memory.status for (c, m), memory in lake_memories(lake).items() if c == cube}


def neighbour(cube: str) -> list[Event]:
    """Another cube in the same bucket whose own "queen" is cold: it must not hide the first cube's."""
    return [
        new_event(
            CubeCreated,
            cube_id=cube,
            actor=OWNER,
            occurred_at=T0,
            payload=CubeCreatedPayload(name="neighbour"),
        ),
        _add(cube, "queen", "A note nobody reads.", 0, priority=0.05),
    ]


def test_consolidation_decides_once_and_its_events_materialize(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # One bucket: both cubes are decided by the same worker.
    settings = settings.model_copy(update={"lake": settings.lake.model_copy(update={"buckets": 1})})
    cube = f"cons-{uuid.uuid4().hex[:8]}"
    other = f"next-{uuid.uuid4().hex[:8]}"
    produce(settings.kafka, workload(cube) + neighbour(other))
    run_jobs(settings)
    lake = Lake(settings.lake)
    factory = embed_factory(settings)

    before = end_offsets(settings.kafka, settings.kafka.events_topic)
    dry = run_consolidate(settings, factory, as_of=AS_OF, dry_run=True)
    assert end_offsets(settings.kafka, settings.kafka.events_topic) == before
    assert not HotMemoriesTable(lake).table.exists()
    assert dry.decisions == {"expire": 1, "merge": 2, "contradiction": 1, "decay": 2}
    assert dry.events_sent == 6
    assert any("merge tea2 into tea1" in line for line in dry.actions)

    first = run_consolidate(settings, factory, as_of=AS_OF)
    assert first.decisions == dry.decisions
    assert first.events_sent == 6
    assert first.embedded == 10  # every active plaintext memory but the expired one
    assert first.hot_selected == 1

    # Same snapshot again (nothing materialized in between): the same decisions, all already logged.
    after_first = end_offsets(settings.kafka, settings.kafka.events_topic)
    second = run_consolidate(settings, factory, as_of=AS_OF + timedelta(hours=1))
    assert second.events_sent == 0
    # Rex's pair is not compared again (neither is new to the vector cache); the rest is re-decided.
    assert second.decisions == {"expire": 1, "merge": 1, "contradiction": 1, "decay": 2}
    assert second.already_logged == 5
    assert second.embedded == 0
    assert end_offsets(settings.kafka, settings.kafka.events_topic) == after_first

    run_jobs(settings)
    assert _statuses(lake, other) == {"queen": MemoryStatus.ARCHIVED}
    statuses = _statuses(lake, cube)
    assert statuses == {
        "expiring": MemoryStatus.EXPIRED,
        "cold": MemoryStatus.ARCHIVED,
        "tea1": MemoryStatus.ACTIVE,
        "tea2": MemoryStatus.MERGED,
        "rex1": MemoryStatus.ACTIVE,
        "rex2": MemoryStatus.MERGED,
        "paris": MemoryStatus.ARCHIVED,
        "berlin": MemoryStatus.ACTIVE,
        "queen": MemoryStatus.ACTIVE,
        "chess": MemoryStatus.ACTIVE,
    }
    memories = {m: memory for (c, m), memory in lake_memories(lake).items() if c == cube}
    # The merge keeps lineage to every source version and the newest wording.
    assert memories["tea1"].header.lineage == (
        SourceRef(memory_id="tea1", version=1),
        SourceRef(memory_id="tea2", version=1),
    )
    assert memories["tea1"].content == Content(text="the user likes GREEN tea")
    assert memories["rex1"].header.lineage == (
        SourceRef(memory_id="rex1", version=1),
        SourceRef(memory_id="rex2", version=1),
    )

    # On the new snapshot nothing is left to decide.
    third = run_consolidate(settings, factory, as_of=AS_OF + timedelta(hours=2))
    assert third.decisions == {}
    assert third.events_sent == 0

    # The command line says the same.
    use_settings(monkeypatch, settings)
    monkeypatch.setenv("MEMLAKE_LAKE_BUCKETS", "1")
    assert main(["consolidate", "--dry-run", "--as-of", (AS_OF + timedelta(hours=3)).isoformat()]) == 0
    assert "no decisions; dry run: would send 0 events" in capsys.readouterr().out

    hot = HotMemoriesTable(lake).read().to_pylist()
    assert [(r["cube_id"], r["memory_id"], r["rank"], r["access_count"]) for r in hot] == [
        (cube, "queen", 1, 3)
    ]
