"""Unit tests of consolidation's pure rules: lifecycle, dedupe/contradiction, decision ids, heat."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from memlake.events import MemoryArchived, MemoryExpired, MemoryMerged
from memlake.ids import uuid7_time
from memlake.model import Content, MemoryKind, MemoryStatus, Policy
from pipelines.decisions import decision_id, to_event
from pipelines.dedupe import DedupeRules, dedupe_group, details, normalise
from pipelines.hot_memories import HotRules, heat_of, select_hot
from pipelines.lifecycle import CubePolicy, Decision, MemoryRow, effective_priority, lifecycle_decisions

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _row(memory_id: str, **changes: object) -> MemoryRow:
    base = MemoryRow(
        cube_id="c1",
        memory_id=memory_id,
        version=1,
        kind=MemoryKind.PLAINTEXT,
        status=MemoryStatus.ACTIVE,
        memory_type="fact",
        tags=(),
        subject_id=None,
        visibility="cube",
        priority=0.5,
        pinned=False,
        sealed=False,
        expires_at=None,
        last_accessed_at=None,
        created_at=NOW - timedelta(days=1),
        updated_at=NOW - timedelta(days=1),
        text=f"text of {memory_id}",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _policy(**changes: object) -> CubePolicy:
    return CubePolicy.of(Policy.model_validate(changes), half_life_days=30.0, archive_below=0.05)


# --- lifecycle ----------------------------------------------------------------------


def test_effective_priority_halves_every_half_life_since_the_last_touch() -> None:
    row = _row(
        "m", priority=0.8, updated_at=NOW - timedelta(days=60), last_accessed_at=NOW - timedelta(days=30)
    )
    assert effective_priority(row, NOW, 30.0) == pytest.approx(0.4)
    assert effective_priority(row, NOW, 15.0) == pytest.approx(0.2)


def test_memory_ttl_expires_and_cube_ttl_applies_to_memories_without_an_expiry() -> None:
    rows = [
        _row("own", expires_at=NOW - timedelta(seconds=1)),
        _row("later", expires_at=NOW + timedelta(hours=1)),
        _row("old", created_at=NOW - timedelta(days=3), expires_at=None),
        _row("young", created_at=NOW - timedelta(hours=1), expires_at=None),
    ]
    found = lifecycle_decisions(rows, _policy(ttl_seconds=86_400 * 2), NOW)
    assert {(d.rule, d.memory_id) for d in found} == {("expire", "own"), ("expire", "old")}
    # Without a cube TTL only the memory's own expiry counts.
    found = lifecycle_decisions(rows, _policy(), NOW)
    assert [(d.rule, d.memory_id) for d in found] == [("expire", "own")]


def test_ttl_expires_pinned_and_archived_memories_too() -> None:
    rows = [
        _row("pinned", pinned=True, expires_at=NOW - timedelta(days=1)),
        _row("archived", status=MemoryStatus.ARCHIVED, expires_at=NOW - timedelta(days=1)),
        _row("merged", status=MemoryStatus.MERGED, expires_at=NOW - timedelta(days=1)),
    ]
    found = lifecycle_decisions(rows, _policy(), NOW)
    assert sorted(d.memory_id for d in found) == ["archived", "pinned"]


def test_retention_expires_archived_memories_after_the_policy_days() -> None:
    rows = [
        _row("long", status=MemoryStatus.ARCHIVED, updated_at=NOW - timedelta(days=11)),
        _row("short", status=MemoryStatus.ARCHIVED, updated_at=NOW - timedelta(days=9)),
        _row("active", updated_at=NOW - timedelta(days=11), priority=1.0),
    ]
    found = lifecycle_decisions(rows, _policy(retention_days=10), NOW)
    assert [(d.rule, d.memory_id) for d in found] == [("retain", "long")]
    assert lifecycle_decisions(rows, _policy(), NOW) == []


def test_decay_archives_cold_memories_but_not_pinned_or_artifacts() -> None:
    cold = NOW - timedelta(days=200)
    rows = [
        _row("cold", updated_at=cold),
        _row("read", updated_at=cold, last_accessed_at=NOW - timedelta(days=1)),
        _row("pinned", updated_at=cold, pinned=True),
        _row("kv", updated_at=cold, kind=MemoryKind.ACTIVATION),
        _row("important", updated_at=cold, priority=1.0),
    ]
    found = lifecycle_decisions(rows, _policy(), NOW)
    # 0.5 * 0.5 ** (200/30) = 0.0049 < 0.05; priority 1.0 gives 0.0098, also cold.
    assert sorted(d.memory_id for d in found) == ["cold", "important"]
    assert all(d.rule == "decay" for d in found)
    # A longer half-life in the cube's policy keeps them; a zero threshold turns decay off.
    assert lifecycle_decisions(rows, _policy(decay_half_life_days=365.0), NOW) == []
    assert lifecycle_decisions(rows, _policy(archive_below_priority=0.0), NOW) == []


def test_policy_defaults_come_from_the_deployment_where_the_cube_is_silent() -> None:
    policy = CubePolicy.of(Policy(), half_life_days=12.0, archive_below=0.2)
    assert (policy.half_life_days, policy.archive_below) == (12.0, 0.2)
    policy = CubePolicy.of(
        Policy(decay_half_life_days=3.0, archive_below_priority=0.0), half_life_days=12.0, archive_below=0.2
    )
    assert (policy.half_life_days, policy.archive_below) == (3.0, 0.0)


# --- dedupe ---------------------------------------------------------------------------


def test_normalise_and_details() -> None:
    assert normalise("The user lives in  Paris.") == normalise("the USER lives in paris")
    assert details("Meeting on Monday at 10am") != details("Meeting on Tuesday at 3pm")
    assert details("The user isn't vegetarian")[1] is True
    assert details("The user is vegetarian")[1] is False
    assert details("The user isn\u2019t vegetarian") == details("The user is not vegetarian")


def _unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


RULES = DedupeRules(merge_similarity=0.93, contradiction_similarity=0.85)


def test_exact_duplicates_merge_into_the_oldest_with_the_newest_content_and_every_source() -> None:
    rows = [
        _row(
            "a",
            text="User likes tea.",
            created_at=NOW - timedelta(days=3),
            updated_at=NOW - timedelta(days=3),
        ),
        _row(
            "b", text="user likes TEA", created_at=NOW - timedelta(days=2), updated_at=NOW - timedelta(days=2)
        ),
        _row(
            "c", text="User likes tea", created_at=NOW - timedelta(days=1), updated_at=NOW - timedelta(days=1)
        ),
        _row("d", text="User likes coffee"),
    ]
    found = dedupe_group(rows, None, [False] * 4, RULES)
    assert len(found) == 1
    merge = found[0]
    assert (merge.rule, merge.memory_id, merge.content_from) == ("merge", "a", "c")
    assert merge.sources == (("a", 1), ("b", 1), ("c", 1))


def test_a_pinned_member_survives_a_merge() -> None:
    rows = [_row("a", text="same", created_at=NOW - timedelta(days=5)), _row("b", text="same", pinned=True)]
    (merge,) = dedupe_group(rows, None, [False, False], RULES)
    assert merge.memory_id == "b"


def test_near_duplicates_merge_only_with_the_same_details_and_only_with_new_memories() -> None:
    rows = [
        _row("old", text="Alice has a dog named Rex", created_at=NOW - timedelta(days=2)),
        _row("new", text="Alice owns a dog called Rex"),
        _row("far", text="Bob plays chess"),
    ]
    vectors = np.stack([_unit(1, 0.1, 0), _unit(1, 0.12, 0), _unit(0, 0, 1)])
    (merge,) = dedupe_group(rows, vectors, [False, True, False], RULES)
    assert merge.rule == "merge"
    assert merge.memory_id == "old"
    assert merge.content_from == "new"
    assert merge.reason.startswith("near duplicates (similarity ")
    # The same pair, neither new: already compared by an earlier run.
    assert dedupe_group(rows, vectors, [False, False, False], RULES) == []


def test_close_texts_with_different_details_are_a_contradiction_and_the_older_is_archived() -> None:
    rows = [
        _row("monday", text="Team meeting on Monday at 10", updated_at=NOW - timedelta(days=2)),
        _row("tuesday", text="Team meeting on Tuesday at 3", updated_at=NOW - timedelta(days=1)),
    ]
    vectors = np.stack([_unit(1, 0.2, 0), _unit(1, 0.25, 0)])
    (found,) = dedupe_group(rows, vectors, [False, True], RULES)
    assert (found.rule, found.memory_id) == ("contradiction", "monday")
    assert "contradicted by tuesday" in found.reason


def test_only_fact_types_contradict() -> None:
    rows = [
        _row("a", text="Lunch with Ann at 12", memory_type="event", updated_at=NOW - timedelta(days=2)),
        _row("b", text="Lunch with Ann at 1", memory_type="event"),
    ]
    vectors = np.stack([_unit(1, 0.2, 0), _unit(1, 0.25, 0)])
    assert dedupe_group(rows, vectors, [False, True], RULES) == []


def test_same_fact_key_means_the_newest_wins_whatever_the_similarity() -> None:
    rows = [
        _row(
            "paris", text="User lives in Paris", tags=("key:home_city",), updated_at=NOW - timedelta(days=9)
        ),
        _row(
            "berlin", text="User lives in Berlin", tags=("key:home_city",), updated_at=NOW - timedelta(days=1)
        ),
        _row("rome", text="User lived in Rome", tags=("key:home_city",), updated_at=NOW - timedelta(days=5)),
        _row(
            "pinned",
            text="User grew up in Oslo",
            tags=("key:home_city",),
            pinned=True,
            updated_at=NOW - timedelta(days=20),
        ),
    ]
    found = dedupe_group(rows, None, [False] * 4, RULES)
    assert sorted((d.rule, d.memory_id) for d in found) == [
        ("contradiction", "paris"),
        ("contradiction", "rome"),
    ]
    assert all("contradicted by" in d.reason for d in found)


# --- decisions as events ---------------------------------------------------------------


def _decision(**changes: object) -> Decision:
    base = Decision("decay", "c1", "m1", 3, NOW - timedelta(days=4), "decay: cold")
    return replace(base, **changes)  # type: ignore[arg-type]


def test_decision_ids_are_deterministic_uuid7_with_the_version_time() -> None:
    first = decision_id(_decision())
    assert first == decision_id(_decision(reason="another wording"))
    assert first != decision_id(_decision(version=4))
    assert first != decision_id(_decision(rule="contradiction"))
    assert first.version == 7
    assert uuid7_time(first) == int((NOW - timedelta(days=4)).timestamp() * 1000)


def test_events_carry_the_decision() -> None:
    run = uuid.uuid4()
    expired = to_event(_decision(rule="expire", reason="ttl"), now=NOW, watermark=5, correlation_id=run)
    assert isinstance(expired, MemoryExpired)
    assert expired.payload.reason == "ttl"
    assert expired.actor.principal == "system:consolidate"
    assert expired.correlation_id == run
    assert expired.event_id == decision_id(_decision(rule="expire"))
    archived = to_event(_decision(), now=NOW, watermark=5, correlation_id=run)
    assert isinstance(archived, MemoryArchived)
    merge = _decision(rule="merge", sources=(("m1", 3), ("m2", 1)), content_from="m2")
    merged = to_event(merge, now=NOW, watermark=5, correlation_id=run, content=Content(text="kept"))
    assert isinstance(merged, MemoryMerged)
    assert merged.payload.sources == ("m1", "m2")
    with pytest.raises(ValueError, match="needs the surviving content"):
        to_event(merge, now=NOW, watermark=5, correlation_id=run)


# --- heat ----------------------------------------------------------------------------


def test_heat_weighs_reads_by_age_and_ignores_the_outside_of_the_window() -> None:
    today = date(2026, 6, 1)
    usage = [
        ("c1", "m1", today, 4, NOW),
        ("c1", "m1", today - timedelta(days=7), 4, NOW - timedelta(days=7)),
        ("c1", "m2", today - timedelta(days=40), 100, NOW - timedelta(days=40)),
    ]
    heat = heat_of(usage, today, HotRules(window_days=30, half_life_days=7.0))
    assert heat[("c1", "m1")].score == pytest.approx(6.0)
    assert heat[("c1", "m1")].access_count == 8
    assert ("c1", "m2") not in heat


def test_select_hot_ranks_per_cube_and_skips_what_is_not_live_or_too_cold() -> None:
    today = NOW.date()
    rows = [_row("a"), _row("b"), _row("c"), _row("gone"), _row("x", cube_id="c2")]
    usage = [
        ("c1", "a", today, 5, NOW),
        ("c1", "b", today, 9, NOW),
        ("c1", "c", today, 1, NOW),
        ("c1", "gone", today, 50, NOW),
        ("c2", "x", today, 3, NOW),
    ]
    rules = HotRules(per_cube=5, min_accesses=2)
    hot = select_hot(
        rows,
        heat_of(usage, today, rules),
        rules,
        exclude=frozenset({("c1", "gone"), ("c2", "a")}),
        watermark=9,
        as_of=NOW,
    )
    assert [(r["cube_id"], r["memory_id"], r["rank"]) for r in hot] == [
        ("c1", "b", 1),
        ("c1", "a", 2),
        ("c2", "x", 1),
    ]
    assert {r["selection_version"] for r in hot} == {9}
