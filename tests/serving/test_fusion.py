from __future__ import annotations

import pytest

from serving.fusion import best_possible, reciprocal_rank_fusion


def test_a_document_found_by_both_retrievers_beats_one_found_by_either() -> None:
    fused = reciprocal_rank_fusion({"dense": ["a", "b", "c"], "lexical": ["c", "d"]}, k=60)
    assert fused[0].key == "c"
    c = fused[0]
    assert c.ranks == {"dense": 3, "lexical": 1}
    assert c.score == pytest.approx(1 / 63 + 1 / 61)


def test_scores_follow_the_formula_with_weights() -> None:
    fused = reciprocal_rank_fusion(
        {"dense": ["a", "b"], "lexical": ["b"]}, weights={"dense": 2.0, "lexical": 0.5}, k=10
    )
    scores = {h.key: h.score for h in fused}
    assert scores["a"] == pytest.approx(2.0 / 11)
    assert scores["b"] == pytest.approx(2.0 / 12 + 0.5 / 11)
    assert [h.key for h in fused] == ["b", "a"]


def test_limit_and_deterministic_ties() -> None:
    fused = reciprocal_rank_fusion({"dense": ["x", "y"], "lexical": ["y", "x"]}, k=60)
    # x and y tie exactly; the one seen first wins.
    assert [h.key for h in fused] == ["x", "y"]
    assert len(reciprocal_rank_fusion({"dense": list("abcdef")}, limit=3)) == 3


def test_a_repeated_key_counts_once_at_its_best_rank() -> None:
    fused = reciprocal_rank_fusion({"dense": ["a", "a", "b"]}, k=60)
    assert {h.key: h.ranks["dense"] for h in fused} == {"a": 1, "b": 3}
    assert fused[0].score == pytest.approx(1 / 61)


def test_best_possible_normalises_to_one() -> None:
    weights = {"dense": 1.0, "lexical": 1.0}
    fused = reciprocal_rank_fusion({"dense": ["a"], "lexical": ["a"]}, weights=weights, k=60)
    assert fused[0].score / best_possible(weights, k=60) == pytest.approx(1.0)


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        reciprocal_rank_fusion({"dense": ["a"]}, k=0)
