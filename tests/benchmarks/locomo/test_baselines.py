from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from benchmarks.locomo.baselines import Bm25Retriever, DenseRetriever, SharedDocumentVectors, tokenize
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
    """A deterministic stand-in embedder for the unit tests: hashed word counts, L2-normalised."""

    dim = 64
    name = "bag-of-words"

    def __init__(self) -> None:
        self.embedded: list[str] = []  # every text the "model" ran on

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.embedded += texts
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in tokenize(text):
                out[row, sum(map(ord, token)) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.where(norms == 0, 1, norms)).astype(np.float32)

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        vector: npt.NDArray[np.float32] = self.embed([text])[0]
        return vector


def test_dense_ranks_by_cosine() -> None:
    conv = parse_conversation(sample())
    dense = DenseRetriever(conv.turns, SharedDocumentVectors(BagOfWords()))
    assert dense.search("hiking Alps", 1) == ["D1:2"]
    assert len(dense.search("hiking Alps", 10)) == len(conv.turns)


def test_the_dense_baseline_reuses_memlakes_document_vectors_but_not_queries() -> None:
    conv = parse_conversation(sample())
    model = BagOfWords()
    shared = SharedDocumentVectors(model)
    documents = [t.document for t in conv.turns]
    memlake_vectors = shared.embed(documents[:3])  # what memlake's index embedded
    model.embedded.clear()
    dense = DenseRetriever(conv.turns, shared)
    assert model.embedded == documents[3:]  # only the turns memlake had not embedded
    assert shared.reused == 3
    np.testing.assert_array_equal(shared.encode(documents[:3]), memlake_vectors)
    model.embedded.clear()
    dense.search("hiking Alps", 1)
    dense.search("hiking Alps", 1)
    assert model.embedded == ["hiking Alps", "hiking Alps"]  # a query is encoded every time
