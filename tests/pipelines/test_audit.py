"""`memlake audit`: who read or changed what in a cube, and when, from the lake."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from lake.tables import Lake
from memlake.cli import main
from memlake.events import (
    CubeCreated,
    CubeCreatedPayload,
    Event,
    MemoryAccessed,
    MemoryAccessedPayload,
    MemoryAdded,
    MemoryAddedPayload,
    MemoryUpdated,
    MemoryUpdatedPayload,
    new_event,
)
from memlake.model import Actor, ActorKind, Content
from memlake.settings import Settings
from pipelines.audit import audit
from pipelines.follow import run_jobs
from tests.pipelines.cli_env import use_settings
from tests.pipelines.helpers import produce

pytestmark = pytest.mark.integration

OWNER = Actor(kind=ActorKind.USER, id="alice")
READER = Actor(kind=ActorKind.USER, id="bob")
STRANGER = Actor(kind=ActorKind.USER, id="mallory")
T0 = datetime(2026, 3, 1, tzinfo=UTC)
SECRET = "alice's door code is 2718"


def _events(cube: str) -> list[Event]:
    return [
        new_event(
            CubeCreated,
            cube_id=cube,
            actor=OWNER,
            occurred_at=T0,
            payload=CubeCreatedPayload(name="audit", readers=(READER.principal,)),
        ),
        new_event(
            MemoryAdded,
            cube_id=cube,
            memory_id="code",
            actor=OWNER,
            occurred_at=T0 + timedelta(minutes=1),
            payload=MemoryAddedPayload(content=Content(text=SECRET)),
        ),
        new_event(
            MemoryAccessed,
            cube_id=cube,
            actor=READER,
            occurred_at=T0 + timedelta(minutes=2),
            payload=MemoryAccessedPayload(memory_ids=("code",), request_kind="search", request_id="r-1"),
        ),
        new_event(
            MemoryUpdated,
            cube_id=cube,
            memory_id="code",
            actor=STRANGER,
            occurred_at=T0 + timedelta(minutes=3),
            payload=MemoryUpdatedPayload(priority=0.9),
        ),
        new_event(
            MemoryUpdated,
            cube_id=cube,
            memory_id="code",
            actor=OWNER,
            occurred_at=T0 + timedelta(minutes=4),
            payload=MemoryUpdatedPayload(tags=("home",), pinned=True),
        ),
    ]


def test_audit_answers_who_read_or_changed_what_and_when(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cube = f"audit-{uuid.uuid4().hex[:6]}"
    other = f"other-{uuid.uuid4().hex[:6]}"
    produce(settings.kafka, _events(cube) + _events(other)[:2])
    run_jobs(settings)
    lake = Lake(settings.lake)

    entries = audit(lake, cube)
    assert [(e.principal, e.action) for e in entries] == [
        ("user:alice", "cube.created"),
        ("user:alice", "memory.added"),
        ("user:bob", "memory.accessed"),
        ("user:mallory", "memory.updated"),
        ("user:alice", "memory.updated"),
    ]
    read = entries[2]
    assert read.memory_ids == ("code",)
    assert read.detail == "read (search, request r-1)"
    assert read.occurred_at == T0 + timedelta(minutes=2)
    assert entries[3].refused is not None
    assert "may not update memories" in entries[3].refused
    assert entries[4].detail == "changed pinned, tags"
    assert entries[4].refused is None
    assert all(SECRET not in e.line() for e in entries)  # the audit shows ids, never content

    assert [e.action for e in audit(lake, cube, principal="user:bob")] == ["memory.accessed"]
    assert audit(lake, cube, since=datetime.now(UTC) + timedelta(days=1)) == []
    assert len(audit(lake, cube, since=entries[0].logged_at)) == 5

    use_settings(monkeypatch, settings)
    assert main(["audit", cube, "--principal", "user:mallory", "--json"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    record = json.loads(line)
    assert record["principal"] == "user:mallory"
    assert record["memory_ids"] == ["code"]
    assert main(["audit", cube]) == 0
    out = capsys.readouterr().out
    assert "5 events of cube" in out
    assert SECRET not in out
