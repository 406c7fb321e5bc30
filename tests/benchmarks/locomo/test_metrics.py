from __future__ import annotations

import math

import pytest

from benchmarks.locomo.dataset import Question
from benchmarks.locomo.metrics import evaluate_retrieval, percentile, session_recall, turn_recall


def q(qid: str, category: int, evidence: tuple[str, ...]) -> Question:
    return Question(qid=qid, question="?", answer="a", category=category, evidence=evidence)


def test_turn_and_session_recall() -> None:
    ranked = ["D1:1", "D2:5", "D3:1", "D2:2"]
    assert turn_recall(["D2:2", "D9:9"], ranked, 4) == 0.5
    assert turn_recall(["D2:2"], ranked, 3) == 0.0
    # D2:2's session (2) is hit by D2:5 at rank 2.
    assert session_recall(["D2:2", "D9:9"], ranked, 2) == 0.5
    assert session_recall(["D2:2"], ranked, 1) == 0.0
    with pytest.raises(ValueError, match="evidence"):
        turn_recall([], ranked, 1)


def test_evaluate_groups_by_category_and_keeps_category_5_apart() -> None:
    questions = [
        q("a", 1, ("D1:1",)),
        q("b", 4, ("D1:2", "D1:3")),
        q("c", 5, ("D2:1",)),
        q("d", 2, ()),  # no evidence: skipped
    ]
    ranked = {"a": ["D1:1", "D1:9"], "b": ["D1:9", "D1:2"], "c": ["D2:1"], "d": []}
    scores = evaluate_retrieval(questions, ranked, ks=(1, 2))
    assert scores.skipped == 1
    assert scores.counts["overall"] == 2
    assert scores.counts["5"] == 1
    assert scores.get("turn", "overall", 1) == pytest.approx((1.0 + 0.0) / 2)
    assert scores.get("turn", "overall", 2) == pytest.approx((1.0 + 0.5) / 2)
    assert scores.get("session", "4", 1) == 1.0
    assert scores.get("turn", "5", 1) == 1.0
    assert math.isnan(scores.get("turn", "3", 1))
    assert scores.as_dict()["turn"]["overall"]["2"] == pytest.approx(0.75)  # type: ignore[index]


def test_evaluate_refuses_a_missing_ranking() -> None:
    with pytest.raises(KeyError, match="a"):
        evaluate_retrieval([q("a", 1, ("D1:1",))], {})


def test_percentile_interpolates_like_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 95) == pytest.approx(3.85)
    assert math.isnan(percentile([], 50))
