from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from benchmarks.locomo.baselines import Bm25Retriever, DenseRetriever, tokenize
from benchmarks.locomo.dataset import parse_conversation
from tests.benchmarks.locomo.samples import sample


def test_tokenize_drops_stop_words_and_stems() -> None:
    assert tokenize("What is the name of Ana's cats?") == ["name", "ana", "cat"]


def test_bm25_ranks_the_matching_turn_first() -> None:
    conv = parse_conversation(sample())
    bm25 = Bm25Retriever(conv.turns)
    assert bm25.search("violin lessons sister", 2)[0] == "D2:1"
    assert bm25.search("Which mug did Pixel break?", 1) == ["D2:2"]
    assert len(bm25.search("the of and", 3)) == 3  # only stop words: still an answer


class BagOfWords:
    """A deterministic encoder for the unit test: hashed word counts, L2-normalised."""

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in tokenize(text):
                out[row, sum(map(ord, token)) % 64] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.where(norms == 0, 1, norms)).astype(np.float32)


def test_dense_ranks_by_cosine() -> None:
    conv = parse_conversation(sample())
    dense = DenseRetriever(conv.turns, BagOfWords())
    assert dense.search("hiking Alps", 1) == ["D1:2"]
    assert len(dense.search("hiking Alps", 10)) == len(conv.turns)
