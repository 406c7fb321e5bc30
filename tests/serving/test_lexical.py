from __future__ import annotations

import math

import pytest

from serving.lexical import Bm25Index, tokenize


def test_tokenize_lowercases_and_drops_stop_words() -> None:
    assert tokenize("The Quick, brown fox -- and a DOG!") == ["quick", "brown", "fox", "dog"]


def test_scores_match_the_bm25_formula() -> None:
    docs = [("d1", "tea tea coffee"), ("d2", "coffee milk"), ("d3", "water")]
    index = Bm25Index.build(docs, k1=1.5, b=0.75)
    avgdl = (3 + 2 + 1) / 3
    idf = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    tf_part = 2 * 2.5 / (2 + 1.5 * (1 - 0.75 + 0.75 * 3 / avgdl))
    [hit] = index.search("tea", limit=5)
    assert hit.key == "d1"
    assert hit.score == pytest.approx(idf * tf_part, rel=1e-5)


def test_ranking_prefers_rarer_terms_and_respects_limit() -> None:
    docs = [(f"d{i}", "common word") for i in range(10)] + [("rare", "common unusual")]
    index = Bm25Index.build(docs)
    hits = index.search("unusual common", limit=3)
    assert hits[0].key == "rare"
    assert len(hits) == 3
    assert index.search("nothing matches", limit=3) == []
    assert index.search("the and of", limit=3) == []  # only stop words


def test_an_empty_index_answers_nothing() -> None:
    index: Bm25Index[str] = Bm25Index.build([])
    assert len(index) == 0
    assert index.search("tea", limit=10) == []
