"""Lexical retrieval: Okapi BM25 over one cube's memories.

An index is immutable and built per cube, so that a snapshot can swap in a
new index for the cubes a materialisation changed and keep the others. Each
term's postings are numpy arrays with the term-frequency part of BM25
precomputed, so a query costs one vectorised add per query term over the
documents that contain it, and a top-k selection.
"""

from __future__ import annotations

__all__ = ["Bm25Index", "LexicalHit", "tokenize", "STOPWORDS"]

import math
import re
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    _WORD.findall(
        """a an and are as at be but by did do does for from had has have he her his i if in into is it its
        me my no not of on or our she so than that the their them then there these they this to was we
        were what when where which who whom why will with you your"""
    )
)

K = TypeVar("K", bound=Hashable)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without English stop words (and without one-letter tokens)."""
    return [t for t in _WORD.findall(text.lower()) if len(t) > 1 and t not in STOPWORDS]


@dataclass(frozen=True, slots=True)
class LexicalHit(Generic[K]):
    key: K
    score: float


class Bm25Index(Generic[K]):
    """BM25 (k1, b) with the Lucene idf `ln(1 + (N - df + 0.5) / (df + 0.5))`, never negative."""

    __slots__ = ("_avgdl", "_b", "_k1", "_keys", "_postings")

    def __init__(
        self,
        keys: Sequence[K],
        postings: dict[str, tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]],
        *,
        k1: float,
        b: float,
        avgdl: float,
    ) -> None:
        self._keys = keys
        self._postings = postings
        self._k1 = k1
        self._b = b
        self._avgdl = avgdl

    @classmethod
    def build(cls, docs: Sequence[tuple[K, str]], *, k1: float = 1.5, b: float = 0.75) -> Bm25Index[K]:
        keys = [key for key, _ in docs]
        counts = [Counter(tokenize(text)) for _, text in docs]
        lengths = np.array([sum(c.values()) for c in counts], dtype=np.float32)
        avgdl = float(lengths.mean()) if len(lengths) and lengths.sum() > 0 else 1.0
        raw: dict[str, tuple[list[int], list[float]]] = {}
        for doc, counter in enumerate(counts):
            for term, tf in counter.items():
                ids, tfs = raw.setdefault(term, ([], []))
                ids.append(doc)
                tfs.append(float(tf))
        postings: dict[str, tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]] = {}
        for term, (ids, tfs) in raw.items():
            id_array = np.asarray(ids, dtype=np.int32)
            tf_array = np.asarray(tfs, dtype=np.float32)
            norm = k1 * (1.0 - b + b * lengths[id_array] / avgdl)
            postings[term] = (id_array, (tf_array * (k1 + 1.0) / (tf_array + norm)).astype(np.float32))
        return cls(keys, postings, k1=k1, b=b, avgdl=avgdl)

    def __len__(self) -> int:
        return len(self._keys)

    def idf(self, term: str) -> float:
        posting = self._postings.get(term)
        df = 0 if posting is None else len(posting[0])
        n = len(self._keys)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def search(self, query: str, *, limit: int) -> list[LexicalHit[K]]:
        """The best `limit` documents containing at least one query term, best first."""
        terms = Counter(tokenize(query))
        if not terms or not self._keys or limit <= 0:
            return []
        scores = np.zeros(len(self._keys), dtype=np.float32)
        touched = False
        for term, qtf in terms.items():
            posting = self._postings.get(term)
            if posting is None:
                continue
            ids, weights = posting
            scores[ids] += np.float32(self.idf(term) * qtf) * weights
            touched = True
        if not touched:
            return []
        candidates = np.flatnonzero(scores > 0)
        if len(candidates) > limit:
            top = candidates[np.argpartition(-scores[candidates], limit - 1)[:limit]]
        else:
            top = candidates
        # Ties broken by position (insertion order) so that results are deterministic.
        order = sorted(top.tolist(), key=lambda i: (-float(scores[i]), i))
        return [LexicalHit(self._keys[i], float(scores[i])) for i in order]
