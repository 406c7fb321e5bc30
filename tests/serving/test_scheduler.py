from __future__ import annotations

import math

import pytest

from serving.scheduler import Candidate, MemScheduler, SchedulerPolicy, SchedulerWeights, render_memory
from tests.serving.builders import T0, hours, memory

NOW = T0 + hours(24 * 30)


def words(text: str) -> int:
    return len(text.split())


def test_components_follow_their_definitions() -> None:
    scheduler = MemScheduler(recency_half_life_hours=24, frequency_saturation=9)
    m = memory("m", access_count=3, last_accessed_at=NOW - hours(48), priority=0.8)
    c = scheduler.components(Candidate(m, "text", relevance=0.7), now=NOW)
    assert c["relevance"] == pytest.approx(0.7)
    assert c["recency"] == pytest.approx(0.25)  # two half lives
    assert c["priority"] == pytest.approx(0.8)
    assert c["frequency"] == pytest.approx(math.log(4) / math.log(10))


def test_recency_uses_the_update_when_never_read_and_frequency_saturates() -> None:
    scheduler = MemScheduler(recency_half_life_hours=10, frequency_saturation=5)
    m = memory("m", updated_at=NOW - hours(10), access_count=500)
    c = scheduler.components(Candidate(m, "t"), now=NOW)
    assert c["recency"] == pytest.approx(0.5)
    assert c["frequency"] == 1.0


def test_weighted_score_is_the_weighted_mean() -> None:
    weights = SchedulerWeights(relevance=2, recency=0, priority=1, frequency=1)
    scheduler = MemScheduler(weights=weights)
    m = memory("m", priority=0.4, updated_at=NOW)
    [scored] = scheduler.rank([Candidate(m, "t", relevance=1.0)], now=NOW)
    assert scored.score == pytest.approx((2 * 1.0 + 1 * 0.4 + 0) / 4)


def test_policies_rank_by_their_own_component() -> None:
    relevant = Candidate(memory("relevant", updated_at=T0, priority=0.1), "a", relevance=0.9)
    recent = Candidate(memory("recent", last_accessed_at=NOW, priority=0.2), "b", relevance=0.1)
    frequent = Candidate(memory("frequent", access_count=90, priority=0.3), "c", relevance=0.2)
    important = Candidate(memory("important", priority=1.0), "d", relevance=0.3)
    candidates = [relevant, recent, frequent, important]

    def first(policy: SchedulerPolicy) -> str:
        return MemScheduler(policy=policy).rank(candidates, now=NOW)[0].memory.memory_id

    assert first(SchedulerPolicy.SEMANTIC) == "relevant"
    assert first(SchedulerPolicy.LRU) == "recent"
    assert first(SchedulerPolicy.LFU) == "frequent"
    assert first(SchedulerPolicy.PRIORITY) == "important"


def test_pinned_memories_come_first_whatever_the_policy() -> None:
    pinned = Candidate(memory("pinned", pinned=True, priority=0.0), "p", relevance=0.0)
    strong = Candidate(memory("strong", priority=1.0), "s", relevance=1.0)
    for policy in SchedulerPolicy:
        ranked = MemScheduler(policy=policy).rank([strong, pinned], now=NOW)
        assert ranked[0].memory.memory_id == "pinned"


def test_the_budget_is_never_exceeded_and_smaller_memories_still_fit() -> None:
    big = Candidate(memory("big"), "one two three four five six seven eight", relevance=1.0)
    mid = Candidate(memory("mid"), "one two three four", relevance=0.8)
    small = Candidate(memory("small"), "one", relevance=0.5)
    scheduler = MemScheduler(policy=SchedulerPolicy.SEMANTIC)
    schedule = scheduler.schedule([big, mid, small], budget_tokens=8, count_tokens=words, now=NOW)
    chosen = [s.memory.memory_id for s in schedule.chosen]
    # "- " prefix counts as a word: big needs 9 > 8, mid 5, small 2.
    assert chosen == ["mid", "small"]
    assert [s.memory.memory_id for s in schedule.skipped] == ["big"]
    assert schedule.tokens_used == 7 <= schedule.budget
    assert sum(s.tokens for s in schedule.chosen) == schedule.tokens_used


def test_zero_budget_chooses_nothing_and_duplicates_are_dropped() -> None:
    m = memory("m")
    scheduler = MemScheduler()
    assert scheduler.schedule([Candidate(m, "x")], budget_tokens=0, count_tokens=words, now=NOW).chosen == ()
    ranked = scheduler.rank([Candidate(m, "x", relevance=0.1), Candidate(m, "x", relevance=0.9)], now=NOW)
    assert len(ranked) == 1


def test_max_memories_caps_the_choice() -> None:
    cands = [Candidate(memory(f"m{i}"), "w", relevance=i / 10) for i in range(5)]
    schedule = MemScheduler().schedule(cands, budget_tokens=100, count_tokens=words, now=NOW, max_memories=2)
    assert len(schedule.chosen) == 2


def test_render_collapses_whitespace() -> None:
    assert render_memory("a\n  b\tc") == "- a b c\n"


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="weights"):
        SchedulerWeights(relevance=0, recency=0, priority=0, frequency=0)
    with pytest.raises(ValueError, match="half life"):
        MemScheduler(recency_half_life_hours=0)
