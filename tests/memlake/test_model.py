"""The domain model: validation names the field and the problem; values are canonical."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from memlake.model import (
    MAX_TEXT_CHARS,
    Acl,
    Actor,
    ActorKind,
    Content,
    Cube,
    Governance,
    Memory,
    MemoryHeader,
    MemoryKind,
    MemoryStatus,
    Policy,
    Sealed,
    Visibility,
    equal_but,
)

T = datetime(2026, 1, 1, tzinfo=UTC)


def _locs(error: ValidationError) -> list[str]:
    return [".".join(str(p) for p in item["loc"]) for item in error.errors()]


def _memory(**governance: object) -> Memory:
    return Memory(
        memory_id="m1",
        cube_id="c1",
        kind=MemoryKind.PLAINTEXT,
        content=Content(text="hello"),
        header=MemoryHeader(created_at=T, updated_at=T),
        governance=Governance.model_validate(governance),
        cube_version=2,
    )


def test_actor_principal_round_trips() -> None:
    actor = Actor.parse("agent:planner-7")
    assert actor == Actor(kind=ActorKind.AGENT, id="planner-7")
    assert actor.principal == "agent:planner-7"


@pytest.mark.parametrize("principal", ["alice", "robot:x"])
def test_actor_parse_refuses_malformed_principals(principal: str) -> None:
    with pytest.raises(ValueError, match=r"robot|kind:id"):
        Actor.parse(principal)


def test_identifier_pattern_names_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        Actor(kind=ActorKind.USER, id="has space")
    assert _locs(info.value) == ["id"]
    assert "pattern" in str(info.value)


def test_acl_is_canonical_and_answers_roles() -> None:
    acl = Acl(owner="user:a", writers=("user:c", "user:b", "user:c"), readers=("user:r",))
    assert acl.writers == ("user:b", "user:c")
    assert acl == Acl(owner="user:a", writers=("user:b", "user:c"), readers=("user:r",))
    assert acl.can_write("user:a")
    assert acl.can_write("user:b")
    assert acl.can_read("user:r")
    assert not acl.can_write("user:r")
    assert not acl.can_read("user:x")


@pytest.mark.parametrize(
    ("principal", "held"),
    [
        ("user:a", {"owner", "writers", "readers"}),
        ("user:b", {"writers", "readers"}),
        ("user:r", {"readers"}),
        ("user:x", set()),
    ],
)
def test_acl_grants_each_role_to_whom_it_should(principal: str, held: set[str]) -> None:
    acl = Acl(owner="user:a", writers=("user:b",), readers=("user:r",))
    assert {role for role in ("owner", "writers", "readers") if acl.grants(principal, role)} == held  # type: ignore[arg-type]


def test_content_needs_exactly_one_form() -> None:
    sealed = Sealed(key_id="k1", subject_id="s1", nonce="bm9uY2U=", ciphertext="Y2lwaGVy")
    with pytest.raises(ValidationError, match="exactly one of 'text' or 'sealed'"):
        Content()
    with pytest.raises(ValidationError, match="exactly one of 'text' or 'sealed'"):
        Content(text="x", sealed=sealed)
    assert Content(sealed=sealed).subject_id == "s1"
    assert Content(text="x").subject_id is None


def test_content_text_blank_or_too_long_is_refused() -> None:
    with pytest.raises(ValidationError, match="must not be blank"):
        Content(text="   ")
    with pytest.raises(ValidationError) as info:
        Content(text="x" * (MAX_TEXT_CHARS + 1))
    assert _locs(info.value) == ["text"]


def test_naive_datetimes_are_refused_and_aware_ones_become_utc() -> None:
    with pytest.raises(ValidationError) as info:
        MemoryHeader(created_at=datetime(2026, 1, 1), updated_at=T)
    assert _locs(info.value) == ["created_at"]
    assert "timezone" in str(info.value)
    paris = timezone(timedelta(hours=1))
    header = MemoryHeader(created_at=datetime(2026, 1, 1, 13, tzinfo=paris), updated_at=T)
    assert header.created_at == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert header.created_at.tzinfo is UTC


def test_policy_bounds_name_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        Policy(ttl_seconds=0)
    assert _locs(info.value) == ["ttl_seconds"]
    with pytest.raises(ValidationError) as info:
        Policy(archive_below_priority=1.5)
    assert _locs(info.value) == ["archive_below_priority"]


def test_values_are_frozen_and_closed() -> None:
    policy = Policy()
    with pytest.raises(ValidationError):
        policy.ttl_seconds = 5  # type: ignore[misc]
    with pytest.raises(ValidationError) as info:
        Policy.model_validate({"ttl": 5})
    assert _locs(info.value) == ["ttl"]
    assert "Extra inputs" in str(info.value)


def test_evolve_equals_a_validated_copy_and_refuses_unknown_fields() -> None:
    policy = Policy(ttl_seconds=60)
    changed = policy.evolve(retention_days=7, ttl_seconds=None)
    assert changed == policy.model_copy(update={"retention_days": 7, "ttl_seconds": None})
    assert changed == Policy(retention_days=7)
    assert changed.model_fields_set == {"ttl_seconds", "retention_days"}
    assert policy == Policy(ttl_seconds=60)  # the original is untouched
    with pytest.raises(ValueError, match=r"Policy has no field \['ttl'\]"):
        policy.evolve(ttl=5)
    # A change of a field already set keeps the set of set fields.
    assert changed.evolve(retention_days=9).model_fields_set == {"ttl_seconds", "retention_days"}
    assert Policy().evolve(retention_days=9).model_fields_set == {"retention_days"}


def test_memory_visibility_on_top_of_the_cube_acl() -> None:
    acl = Acl(owner="user:a", writers=("user:w",), readers=("user:r", "user:s"))
    assert _memory().readable_by("user:r", acl)
    assert not _memory().readable_by("user:x", acl)
    private = _memory(visibility=Visibility.PRIVATE)
    assert private.readable_by("user:w", acl)
    assert not private.readable_by("user:r", acl)
    narrowed = _memory(readers_override=("user:s",))
    assert narrowed.readable_by("user:s", acl)
    assert not narrowed.readable_by("user:r", acl)


def test_memory_expiry_and_lifecycle() -> None:
    memory = _memory(expires_at=T + timedelta(hours=1))
    assert not memory.is_expired_at(T)
    assert memory.is_expired_at(T + timedelta(hours=1))
    assert not _memory().is_expired_at(T + timedelta(days=10_000))
    assert MemoryStatus.ACTIVE.is_live
    assert not any(s.is_live for s in MemoryStatus if s is not MemoryStatus.ACTIVE)


def test_memory_subject_comes_from_governance_or_sealed_content() -> None:
    assert _memory(subject_id="s9").subject_id == "s9"
    sealed = Sealed(key_id="k1", subject_id="s1", nonce="bm9uY2U=", ciphertext="Y2lwaGVy")
    memory = _memory().model_copy(update={"content": Content(sealed=sealed)})
    assert memory.subject_id == "s1"


def test_cube_version_starts_at_one() -> None:
    with pytest.raises(ValidationError) as info:
        Cube(cube_id="c", name="n", acl=Acl(owner="user:a"), version=0, created_at=T, updated_at=T)
    assert _locs(info.value) == ["version"]


def test_equal_but_ignores_only_the_fields_named() -> None:
    policy = Policy(ttl_seconds=60)
    other = policy.evolve(retention_days=7)
    assert equal_but(policy, other, frozenset({"retention_days"}))
    assert not equal_but(policy, other, frozenset({"ttl_seconds"}))
    assert equal_but(policy, policy.evolve(ttl_seconds=60), frozenset())
