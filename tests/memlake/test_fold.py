"""The pure fold: every event type, every rejection, rollback and idempotence."""

from __future__ import annotations

from datetime import timedelta

import pytest

from memlake.errors import (
    CubeExistsError,
    CubeNotFoundError,
    InvalidEventError,
    MemoryExistsError,
    MemoryNotFoundError,
    MemoryNotWritableError,
    PermissionDeniedError,
    RollbackTargetError,
    VersionConflictError,
)
from memlake.events import Event
from memlake.fold import CubeState, apply, fold, memories_at, permits, project
from memlake.model import (
    Acl,
    Actor,
    ActorKind,
    Content,
    MemoryKind,
    MemoryStatus,
    Policy,
    Sealed,
    SourceRef,
    Visibility,
)
from tests.memlake import builders as b


def _state(*events: Event) -> CubeState:
    result = fold(CubeState(), events)
    assert not result.rejected, [r.reason for r in result.rejected]
    return result.state


def _text(state: CubeState, memory_id: str) -> str | None:
    content = state.memories[memory_id].content
    return content.text if content else None


# --- cube events ------------------------------------------------------------------


def test_cube_created_sets_owner_acl_policy_and_version_one() -> None:
    state = apply(CubeState(), b.created(ttl_seconds=3600))
    assert state.cube is not None
    assert state.version == 1
    assert state.cube.owner == b.OWNER.principal
    assert state.cube.acl.writers == (b.WRITER.principal,)
    assert state.cube.policy.ttl_seconds == 3600
    assert state.cube.created_at == b.T0


def test_a_cube_cannot_be_created_twice() -> None:
    state = _state(b.created())
    with pytest.raises(CubeExistsError) as info:
        apply(state, b.created())
    assert info.value.cube_id == b.CUBE


def test_events_for_a_cube_that_does_not_exist_are_rejected() -> None:
    event = b.added("m1")
    with pytest.raises(CubeNotFoundError) as info:
        apply(CubeState(), event)
    assert info.value.event_id == str(event.event_id)


def test_policy_change_by_the_owner_applies_and_by_a_writer_does_not() -> None:
    state = _state(b.created())
    state = apply(state, b.policy_changed(encrypt_content=True))
    assert state.cube is not None
    assert state.cube.policy == Policy(encrypt_content=True)
    assert state.version == 2
    with pytest.raises(PermissionDeniedError) as info:
        apply(state, b.policy_changed(actor=b.WRITER, ttl_seconds=5))
    assert info.value.principal == b.WRITER.principal
    assert info.value.action == "change the policy"


def test_acl_change_by_the_owner_replaces_the_acl() -> None:
    state = _state(b.created(), b.acl_changed(writers=("user:carol",), readers=()))
    assert state.cube is not None
    assert state.cube.acl == Acl(owner=b.OWNER.principal, writers=("user:carol",))


def test_acl_change_by_a_stranger_is_rejected_and_changes_nothing() -> None:
    state = _state(b.created())
    event = b.acl_changed(owner=b.STRANGER.principal, actor=b.STRANGER)
    with pytest.raises(PermissionDeniedError, match=r"user:mallory may not change the ACL"):
        apply(state, event)
    result = fold(state, [event])
    assert result.state.cube == state.cube
    assert result.state.refused == {str(event.event_id)}
    assert [r.error for r in result.rejected]
    assert result.rejected[0].reason.startswith("user:mallory")


def test_system_actors_may_do_owner_things() -> None:
    state = _state(b.created(), b.added("m1"))
    state = apply(state, b.expired("m1", actor=b.SYSTEM))
    assert state.memories["m1"].status is MemoryStatus.EXPIRED


def test_permits_is_the_rule_the_fold_applies() -> None:
    # What the command line and erasure ask before they emit: it must refuse what the fold refuses.
    state = _state(b.created(), b.added("m1"))
    cube = state.cube
    assert cube is not None
    stranger = Actor(kind=ActorKind.USER, id="mallory")
    assert permits(cube, b.SYSTEM, "owner")
    assert permits(cube, Actor.parse(cube.acl.owner), "owner")
    assert not permits(cube, stranger, "readers")
    result = fold(state, [b.expired("m1", actor=stranger)])
    assert (
        result.rejected[0].reason == f"{stranger.principal} may not expire memories in cube {cube.cube_id!r}"
    )


def test_expected_version_conflict_names_both_versions() -> None:
    state = _state(b.created(), b.added("m1"))
    assert apply(state, b.with_expected_version(b.added("m2"), 2)).version == 3
    with pytest.raises(VersionConflictError) as info:
        apply(state, b.with_expected_version(b.added("m2"), 1))
    assert (info.value.expected, info.value.actual) == (1, 2)
    assert apply(CubeState(), b.with_expected_version(b.created(), 0)).version == 1


def test_an_event_for_another_cube_is_a_programming_error() -> None:
    state = _state(b.created())
    other = b.added("m1").model_copy(update={"cube_id": "cube-2"})
    with pytest.raises(ValueError, match="cube-2"):
        apply(state, other)
    with pytest.raises(ValueError, match="cube-2"):
        fold(state, [other])


# --- memory events ---------------------------------------------------------------


def test_memory_added_builds_header_governance_and_expiry() -> None:
    at = b.T0 + timedelta(minutes=1)
    state = _state(
        b.created(ttl_seconds=600, subject_id="alice"),
        b.added("m1", at=at, tags=["pref"], priority=0.8, actor=b.WRITER),
    )
    memory = state.memories["m1"]
    assert memory.kind is MemoryKind.PLAINTEXT
    assert memory.content == Content(text="likes tea")
    assert memory.header.tags == ("pref",)
    assert memory.header.created_at == at
    assert memory.governance.priority == 0.8
    assert memory.governance.expires_at == at + timedelta(seconds=600)  # the cube's TTL
    assert memory.governance.subject_id == "alice"  # the cube's subject
    assert memory.version == 1
    assert memory.cube_version == 2
    assert state.version == 2


def test_the_subject_of_sealed_content_wins_over_the_cubes() -> None:
    sealed = {"key_id": "k-bob", "subject_id": "bob", "nonce": "bm9uY2U=", "ciphertext": "Y2lwaGVy"}
    state = _state(b.created(subject_id="alice"), b.add_sealed("m1", sealed))
    assert state.memories["m1"].subject_id == "bob"
    assert state.memories["m1"].content == Content(sealed=Sealed.model_validate(sealed))


def test_adding_needs_a_writer_and_a_fresh_id() -> None:
    state = _state(b.created(), b.added("m1"))
    with pytest.raises(PermissionDeniedError):
        apply(state, b.added("m2", actor=b.READER))
    with pytest.raises(MemoryExistsError) as info:
        apply(state, b.added("m1"))
    assert info.value.memory_id == "m1"
    deleted = apply(state, b.deleted("m1"))
    with pytest.raises(MemoryExistsError):
        apply(deleted, b.added("m1"))  # ids are never reused, even after deletion


def test_memory_updated_changes_only_what_it_names() -> None:
    state = _state(b.created(), b.added("m1", tags=["a"], priority=0.3))
    at = b.T0 + timedelta(hours=1)
    state = apply(state, b.updated("m1", at=at, content={"text": "likes green tea"}, ttl_seconds=60))
    memory = state.memories["m1"]
    assert _text(state, "m1") == "likes green tea"
    assert memory.header.tags == ("a",)
    assert memory.governance.priority == 0.3
    assert memory.governance.expires_at == at + timedelta(seconds=60)
    assert memory.header.updated_at == at
    assert memory.header.created_at == b.T0
    assert memory.version == 2
    assert [m.version for m in state.history["m1"]] == [1, 2]


def test_update_rejections() -> None:
    state = _state(b.created(), b.added("m1"), b.transformed("a1", [("m1", 1)]))
    with pytest.raises(MemoryNotFoundError):
        apply(state, b.updated("nope", priority=0.1))
    with pytest.raises(MemoryNotWritableError, match="parametric memory"):
        apply(state, b.updated("a1", content={"text": "adapters hold no text"}))
    gone = apply(state, b.deleted("m1"))
    with pytest.raises(MemoryNotWritableError) as info:
        apply(gone, b.updated("m1", priority=0.1))
    assert info.value.status == "deleted"


def test_delete_archive_expire_set_the_lifecycle() -> None:
    state = _state(b.created(), b.added("m1"), b.added("m2"), b.added("m3"))
    state = _state_after(state, b.deleted("m1"), b.archived("m2"), b.expired("m3"))
    assert [state.memories[m].status for m in ("m1", "m2", "m3")] == [
        MemoryStatus.DELETED,
        MemoryStatus.ARCHIVED,
        MemoryStatus.EXPIRED,
    ]
    assert state.live_memories() == []
    # An archived memory can still be revived by an update; an expired one cannot change.
    revived = apply(state, b.updated("m2", priority=0.9))
    assert revived.memories["m2"].status is MemoryStatus.ARCHIVED
    with pytest.raises(MemoryNotWritableError):
        apply(state, b.deleted("m3"))
    with pytest.raises(PermissionDeniedError):
        apply(state, b.expired("m2", actor=b.WRITER))


def _state_after(state: CubeState, *events: Event) -> CubeState:
    result = fold(state, events)
    assert not result.rejected, [r.reason for r in result.rejected]
    return result.state


def test_memory_accessed_counts_reads_without_a_new_memory_version() -> None:
    state = _state(b.created(), b.added("m1"), b.added("m2"))
    at = b.T0 + timedelta(days=1)
    state = apply(state, b.accessed("m1", "m1", "m2", "gone", at=at))
    assert state.memories["m1"].indicators.access_count == 1  # one read, listed twice
    assert state.memories["m1"].indicators.last_accessed_at == at
    assert state.memories["m1"].version == 1
    assert len(state.history["m1"]) == 1
    assert state.version == 4  # the cube still moves on: every event is a version
    with pytest.raises(PermissionDeniedError):
        apply(state, b.accessed("m1", actor=b.STRANGER))


def test_memory_merged_into_a_new_survivor() -> None:
    state = _state(
        b.created(), b.added("m1", tags=["a"], priority=0.2), b.added("m2", tags=["b"], priority=0.7)
    )
    state = apply(state, b.accessed("m1", "m2"))
    state = apply(state, b.merged("m3", ["m1", "m2"], "tea, green"))
    survivor = state.memories["m3"]
    assert _text(state, "m3") == "tea, green"
    assert survivor.header.lineage == (
        SourceRef(memory_id="m1", version=1),
        SourceRef(memory_id="m2", version=1),
    )
    assert survivor.header.tags == ("a", "b")
    assert survivor.governance.priority == 0.7
    assert survivor.indicators.access_count == 2
    assert state.memories["m1"].status is MemoryStatus.MERGED
    assert state.memories["m2"].status is MemoryStatus.MERGED


def test_memory_merged_into_one_of_its_sources() -> None:
    state = _state(b.created(), b.added("m1"), b.added("m2"))
    state = apply(state, b.merged("m1", ["m1", "m2"], "both"))
    assert state.memories["m1"].status is MemoryStatus.ACTIVE
    assert _text(state, "m1") == "both"
    assert state.memories["m1"].version == 2
    assert state.memories["m2"].status is MemoryStatus.MERGED


def test_merge_rejections_leave_every_memory_untouched() -> None:
    state = _state(b.created(), b.added("m1"), b.added("m2"), b.added("m3"))
    with pytest.raises(MemoryNotFoundError):
        apply(state, b.merged("m9", ["m1", "nope"]))
    # The survivor id is taken by a memory that is not a source: nothing may change,
    # in `fold` too (which keeps going after a rejection).
    bad = b.merged("m3", ["m1", "m2"])
    with pytest.raises(MemoryExistsError):
        apply(state, bad)
    result = fold(state, [bad, b.updated("m1", priority=0.1)])
    assert len(result.rejected) == 1
    assert result.state.memories["m1"].status is MemoryStatus.ACTIVE
    assert result.state.memories["m2"] == state.memories["m2"]
    gone = apply(state, b.deleted("m2"))
    with pytest.raises(MemoryNotWritableError):
        apply(gone, b.merged("m9", ["m1", "m2"]))


def test_memory_transformed_makes_a_derived_memory_with_lineage() -> None:
    state = _state(b.created(subject_id="alice"), b.added("m1"))
    state = apply(state, b.transformed("a1", [("m1", 1)]))
    adapter = state.memories["a1"]
    assert adapter.kind is MemoryKind.PARAMETRIC
    assert adapter.artifact is not None
    assert adapter.artifact.format == "peft-lora"
    assert adapter.header.lineage == (SourceRef(memory_id="m1", version=1),)
    assert adapter.header.memory_type == "derived"
    assert adapter.governance.subject_id == "alice"
    # A second run of the same transformation revises its output.
    state = apply(state, b.transformed("a1", [("m1", 1)]))
    assert state.memories["a1"].version == 2
    with pytest.raises(MemoryNotFoundError):
        apply(state, b.transformed("a2", [("nope", 1)]))
    with pytest.raises(MemoryExistsError):
        apply(state, b.transformed("m1", [("m1", 1)]))  # the output id is a plaintext memory


def test_subject_erased_drops_content_from_every_version() -> None:
    sealed = {"key_id": "k-bob", "subject_id": "bob", "nonce": "bm9uY2U=", "ciphertext": "Y2lwaGVy"}
    state = _state(
        b.created(),
        b.added("about-bob", subject_id="bob"),
        b.updated("about-bob", content={"text": "bob moved to Lyon"}),
        b.add_sealed("sealed-bob", sealed),
        b.added("about-carol", subject_id="carol"),
    )
    state = apply(state, b.erased("bob"))
    for memory_id in ("about-bob", "sealed-bob"):
        assert state.memories[memory_id].status is MemoryStatus.ERASED
        assert state.memories[memory_id].content is None
        assert all(m.content is None for m in state.history[memory_id])
    assert _text(state, "about-carol") == "likes tea"
    with pytest.raises(PermissionDeniedError):
        apply(state, b.erased("carol", actor=b.WRITER))


def test_erasure_survives_a_rollback_to_before_it() -> None:
    state = _state(b.created(), b.added("m1", subject_id="bob"), b.added("m2"))
    state = apply(state, b.erased("bob"))
    state = apply(state, b.rolled_back(2))
    assert state.memories["m1"].content is None
    assert state.memories["m1"].status is MemoryStatus.ERASED
    assert "m1" not in {m.memory_id for m in state.live_memories()}


def test_erasing_the_subject_of_a_cube_erases_all_of_it() -> None:
    state = _state(b.created(subject_id="alice"), b.added("m1"), b.added("m2", visibility="private"))
    state = apply(state, b.erased("alice"))
    assert {m.status for m in state.memories.values()} == {MemoryStatus.ERASED}
    assert state.memories["m2"].governance.visibility is Visibility.PRIVATE


# --- rollback --------------------------------------------------------------------


def test_rollback_returns_memories_and_policy_to_an_earlier_version() -> None:
    events = [
        b.created(),  # v1
        b.added("m1", "likes tea"),  # v2
        b.policy_changed(ttl_seconds=60),  # v3
        b.updated("m1", content={"text": "likes coffee"}),  # v4
        b.added("m2"),  # v5
        b.deleted("m1"),  # v6
    ]
    state = apply(_state(*events), b.rolled_back(3))
    assert state.version == 7
    assert state.view() == _state(*events[:3]).view()
    assert _text(state, "m1") == "likes tea"
    assert state.memories["m1"].status is MemoryStatus.ACTIVE
    assert state.memories["m2"].status is MemoryStatus.DELETED
    assert state.cube is not None
    assert state.cube.policy.ttl_seconds == 60
    # The rollback is itself a version: rolling back to just before it undoes it.
    again = apply(state, b.rolled_back(6))
    assert again.view() == _state(*events).view()
    assert _text(again, "m1") == "likes coffee"
    assert again.memories["m1"].status is MemoryStatus.DELETED
    assert again.memories["m2"].status is MemoryStatus.ACTIVE


def test_rollback_keeps_the_acl_and_access_counts() -> None:
    state = _state(b.created(), b.added("m1"), b.acl_changed(readers=()), b.accessed("m1", actor=b.OWNER))
    state = apply(state, b.rolled_back(2))
    assert state.cube is not None
    assert state.cube.acl.readers == ()
    assert state.memories["m1"].indicators.access_count == 1


@pytest.mark.parametrize("target", [4, 100])
def test_rollback_target_must_be_an_existing_version(target: int) -> None:
    state = _state(b.created(), b.added("m1"), b.added("m2"))
    with pytest.raises(RollbackTargetError) as info:
        apply(state, b.rolled_back(target))
    assert (info.value.to_version, info.value.current) == (target, 3)
    assert "between 1 and the current version 3" in str(info.value)


def test_rollback_to_version_zero_is_not_a_valid_event() -> None:
    with pytest.raises(InvalidEventError) as info:
        b.rolled_back(0)
    assert [p.field for p in info.value.problems] == ["payload.to_version"]


def test_rollback_by_a_writer_needs_the_policy_to_allow_it() -> None:
    state = _state(b.created(), b.added("m1"))
    with pytest.raises(PermissionDeniedError):
        apply(state, b.rolled_back(1, actor=b.WRITER))
    state = apply(state, b.policy_changed(rollback_by="writers"))
    assert apply(state, b.rolled_back(1, actor=b.WRITER)).memories["m1"].status is MemoryStatus.DELETED


def test_memories_at_reads_any_version() -> None:
    state = _state(b.created(), b.added("m1", "v1 text"), b.updated("m1", content={"text": "v2 text"}))
    assert memories_at(state, 1) == {}
    assert memories_at(state, 2)["m1"].content == Content(text="v1 text")
    assert memories_at(state, 3)["m1"].content == Content(text="v2 text")


# --- idempotence and fold ----------------------------------------------------------


def test_a_duplicate_event_changes_nothing() -> None:
    add = b.added("m1")
    state = _state(b.created(), add)
    assert apply(state, add) == state
    assert apply(state, add) is not state  # a new (equal) frozen value
    access = b.accessed("m1")
    once = apply(state, access)
    assert apply(once, access) == once
    assert once.memories["m1"].indicators.access_count == 1


def test_a_refused_event_stays_refused_when_redelivered() -> None:
    early_update = b.updated("m1", priority=0.2)
    events = [b.created(), early_update, b.added("m1"), early_update]
    state = project(events)
    assert state.memories["m1"].governance.priority == 0.5
    assert str(early_update.event_id) in state.refused
    assert str(early_update.event_id) not in state.applied


def test_fold_collects_rejections_and_goes_on() -> None:
    events = [b.created(), b.updated("m1", priority=0.2), b.added("m1"), b.acl_changed(actor=b.STRANGER)]
    result = fold(CubeState(), events)
    assert [type(r.error) for r in result.rejected] == [MemoryNotFoundError, PermissionDeniedError]
    assert [(e.type, v) for e, v in result.applied] == [("cube.created", 1), ("memory.added", 2)]
    assert result.state.version == 2
    assert project(events) == result.state
    # Kept without tracebacks: those held the fold's frames, and the result with them, in a cycle.
    assert all(r.error.__traceback__ is None for r in result.rejected)
    assert all(r.reason for r in result.rejected)


def test_state_is_frozen() -> None:
    state = _state(b.created(), b.added("m1"))
    with pytest.raises(TypeError):
        state.memories["m2"] = state.memories["m1"]  # type: ignore[index]
