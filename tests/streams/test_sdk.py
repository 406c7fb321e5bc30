"""The client SDK against the real broker: validated writes, deliveries, sealing, ingest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memlake.errors import ConfigError, InvalidEventError, SealedContentError
from memlake.events import (
    CubeAclChanged,
    CubeCreated,
    CubePolicyChanged,
    CubeRolledBack,
    MemoryAccessed,
    MemoryAdded,
    MemoryDeleted,
    MemoryUpdated,
    serialize_event,
)
from memlake.fold import project
from memlake.model import Acl, Content, MemoryStatus, Policy
from memlake.settings import KafkaSettings, Settings
from streams.dead_letters import read_dead_letters
from streams.reader import end_offsets
from streams.sdk import CubeProfile, InMemoryCubeCatalog, MemlakeClient
from streams.sealing import LocalKeyStore, Sealer
from tests.memlake import builders as b
from tests.streams.log_helpers import read_events

pytestmark = pytest.mark.integration


def test_the_constructor_does_no_io() -> None:
    unreachable = Settings(kafka=KafkaSettings(bootstrap="127.0.0.1:1"))
    MemlakeClient(unreachable, actor="user:alice").close()


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        (
            {"actor": "alice"},
            "setting 'actor': 'alice' is not a principal kind:id: principal 'alice' is not of the form",
        ),
        (
            {"actor": "robot:r2"},
            "setting 'actor': 'robot:r2' is not a principal kind:id: 'robot' is not a valid ActorKind",
        ),
        (
            {"actor": "user:a b"},
            "setting 'actor': 'user:a b' is not a principal kind:id: String should match pattern",
        ),
        ({"actor": "user:alice", "product": ""}, "'' is not a product name: String should have at least 1"),
    ],
)
def test_a_client_built_with_a_bad_actor_or_product_says_which(kwargs: dict[str, str], problem: str) -> None:
    # memlake's own error, so that a product catching MemlakeError catches it; one line.
    with pytest.raises(ConfigError) as refused:
        MemlakeClient(Settings(), **kwargs)  # type: ignore[arg-type]
    assert problem in str(refused.value)
    assert "\n" not in str(refused.value)


def test_every_sdk_call_lands_as_a_validated_event_in_order(settings: Settings) -> None:
    with MemlakeClient(settings, actor="user:alice", product="notes-app") as client:
        deliveries = [
            client.create_cube("alice", name="Alice", readers=["user:bob"]),
            client.add_memory("alice", "likes tea", memory_id="m1", tags=["pref"], source_ref="dlg-1#2"),
            client.add_memory("alice", "lives in Lyon", memory_id="m2"),
            client.update_memory("alice", "m1", text="likes green tea", priority=0.9),
            client.record_access("alice", ["m1", "m2"], request_kind="search", request_id="r-1"),
            client.delete_memory("alice", "m2", reason="moved"),
            client.change_policy("alice", Policy(ttl_seconds=3600)),
            client.change_acl("alice", Acl(owner="user:alice", readers=("user:carol",))),
            client.rollback_cube("alice", 3, reason="undo the update"),
        ]
    assert len({d.partition for d in deliveries}) == 1
    assert [d.offset for d in deliveries] == list(range(deliveries[0].offset, deliveries[0].offset + 9))
    logged = read_events(settings.kafka)
    assert [str(e.event_id) for _, e in logged] == [d.event_id for d in deliveries]
    assert [type(e) for _, e in logged] == [
        CubeCreated,
        MemoryAdded,
        MemoryAdded,
        MemoryUpdated,
        MemoryAccessed,
        MemoryDeleted,
        CubePolicyChanged,
        CubeAclChanged,
        CubeRolledBack,
    ]
    record, added = logged[1]
    assert record.key == b"alice"
    assert added.actor.principal == "user:alice"
    assert added.source is not None
    assert (added.source.product, added.source.ref) == ("notes-app", "dlg-1#2")
    state = project(e for _, e in logged)
    assert state.version == 9
    assert state.memories["m1"].content == Content(text="likes tea")  # rolled back to version 3
    assert state.memories["m2"].status is MemoryStatus.ACTIVE


def test_an_invalid_call_raises_at_the_caller_and_writes_nothing(settings: Settings) -> None:
    before = end_offsets(settings.kafka, settings.kafka.events_topic)
    with MemlakeClient(settings, actor="user:alice") as client:
        with pytest.raises(InvalidEventError) as info:
            client.add_memory("alice", "  ")
        assert "payload.content: Value error, text must not be blank" in str(info.value)
        with pytest.raises(InvalidEventError, match=r"payload\.priority"):
            client.add_memory("alice", "x", priority=3)
        with pytest.raises(InvalidEventError, match="cube_id"):
            client.create_cube("no spaces", name="n")
        with pytest.raises(InvalidEventError, match="at least one field"):
            client.update_memory("alice", "m1")
        with pytest.raises(InvalidEventError, match="to_version"):
            client.rollback_cube("alice", 0)
        oversized = [f"tag-{i:06d}-" + "x" * 100 for i in range(10_000)]
        with pytest.raises(InvalidEventError, match="over the limit"):
            client.add_memory("alice", "many tags", tags=oversized)
        # A lone surrogate is a Python string but not UTF-8: refused, not escaped onto the log,
        # whether it comes through a call or an event changed after it was validated.
        with pytest.raises(InvalidEventError, match=r"payload\.content\.text"):
            client.add_memory("alice", "half an emoji \ud83d")
        ok = client.build_add_memory("alice", "ok")
        changed = ok.model_copy(update={"cube_id": "alice\udc00"})
        with pytest.raises(InvalidEventError, match="cannot be written as UTF-8"):
            client.send([ok, changed])
    assert end_offsets(settings.kafka, settings.kafka.events_topic) == before


def test_content_is_sealed_when_the_cube_or_the_call_asks(settings: Settings) -> None:
    sealer = Sealer(LocalKeyStore(settings.governance.key_store))
    with MemlakeClient(settings, actor="user:alice", sealer=sealer) as client:
        client.create_cube("vault", name="Vault", policy=Policy(encrypt_content=True), subject_id="alice")
        client.add_memory("vault", "alice's diary", memory_id="v1")
        client.create_cube("plain", name="Plain")
        client.add_memory("plain", "public fact", memory_id="p1")
        client.add_memory("plain", "bob's phone number", memory_id="p2", subject_id="bob")
        client.change_policy("plain", Policy(encrypt_content=True))
        client.update_memory("plain", "p1", text="now sealed under the cube's own id")
    raw = b"".join(r.value or b"" for r, _ in read_events(settings.kafka))
    assert b"diary" not in raw
    assert b"phone" not in raw
    assert b"public fact" in raw
    events = {e.memory_id: e for _, e in read_events(settings.kafka) if e.memory_id}
    v1 = events["v1"].payload.content  # type: ignore[union-attr]
    assert isinstance(v1, Content)
    assert v1.sealed is not None
    assert v1.sealed.subject_id == "alice"
    assert sealer.open(v1) == "alice's diary"
    p1_update = next(e for _, e in read_events(settings.kafka) if isinstance(e, MemoryUpdated))
    assert p1_update.payload.content is not None
    assert p1_update.payload.content.subject_id == "plain"
    # Erasure: once bob's key is gone, no copy of his memory opens, the log's included.
    sealer.keys.destroy("bob")
    p2 = events["p2"].payload.content  # type: ignore[union-attr]
    assert isinstance(p2, Content)
    with pytest.raises(SealedContentError, match="destroyed"):
        sealer.open(p2)


def test_a_catalog_tells_the_sdk_about_cubes_it_did_not_create(settings: Settings) -> None:
    catalog = InMemoryCubeCatalog()
    catalog.remember("elsewhere", CubeProfile(Policy(encrypt_content=True), subject_id="dana"))
    with MemlakeClient(settings, actor="user:alice", catalog=catalog) as client:
        client.add_memory("elsewhere", "dana's secret", memory_id="d1")
    ((_, event),) = read_events(settings.kafka)
    assert isinstance(event, MemoryAdded)
    assert event.payload.content is not None
    assert event.payload.content.subject_id == "dana"


def test_ingest_sends_valid_lines_and_dead_letters_the_rest(settings: Settings, tmp_path: Path) -> None:
    full = b.added("m-full", "a full event line").model_copy(update={"cube_id": "bulk"})
    lines = [
        json.dumps({"op": "create_cube", "cube": "bulk", "name": "Bulk"}),
        json.dumps({"op": "add", "cube": "bulk", "text": "first", "memory_id": "m-1", "ref": "turn-1"}),
        "{not json",
        "",
        json.dumps({"op": "add", "cube": "bulk", "text": "bad priority", "priority": 9}),
        serialize_event(full).decode(),
        json.dumps({"op": "update", "cube": "bulk", "memory_id": "m-1", "tags": ["edited"]}),
    ]
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with MemlakeClient(settings, actor="service:importer") as client:
        report = client.ingest(path, chunk=2)
    assert report.sent == 4
    assert report.lines == 7
    assert [(p.line, p.reason.split(":")[0]) for p in report.problems] == [
        (3, "invalid event"),
        (5, "invalid memory.added event"),
    ]
    assert "not valid JSON" in report.problems[0].reason
    assert "priority" in report.problems[1].reason
    logged = read_events(settings.kafka)
    assert [e.type for _, e in logged] == ["cube.created", "memory.added", "memory.added", "memory.updated"]
    assert logged[2][1] == full
    assert report.last_offsets == {logged[-1][0].partition: logged[-1][0].offset}
    letters = read_dead_letters(settings.kafka)
    assert [(d.stage, d.source_file, d.source_offset) for d in letters] == [
        ("ingest", str(path), 3),
        ("ingest", str(path), 5),
    ]
    assert letters[0].original == b"{not json"
    state = project(e for _, e in logged)
    assert state.memories["m-1"].header.tags == ("edited",)
