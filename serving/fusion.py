"""Fusing rankings: weighted reciprocal rank fusion (Cormack et al., 2009).

Dense cosine similarities and BM25 scores live on different scales; RRF uses
only each retriever's ranks: `score(d) = sum_r w_r / (k + rank_r(d))`, ranks
from 1. A document found by both retrievers beats one found by either alone
at the same rank. `best_possible` is the score of a document ranked first
everywhere (fused scores divided by it fall in [0, 1]).
"""

from __future__ import annotations

__all__ = ["FusedHit", "reciprocal_rank_fusion", "best_possible"]

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class FusedHit(Generic[K]):
    key: K
    score: float
    ranks: Mapping[str, int] = field(default_factory=dict)  # retriever -> 1-based rank


def best_possible(weights: Mapping[str, float], *, k: float) -> float:
    return sum(w / (k + 1.0) for w in weights.values())


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[K]],
    *,
    weights: Mapping[str, float] | None = None,
    k: float = 60.0,
    limit: int | None = None,
) -> list[FusedHit[K]]:
    """Fuse best-first rankings by name. A key repeated within one ranking counts at its best rank."""
    if k <= 0:
        raise ValueError("k must be positive")
    scores: dict[K, float] = {}
    ranks: dict[K, dict[str, int]] = {}
    first_seen: dict[K, int] = {}
    for name, ranking in rankings.items():
        weight = 1.0 if weights is None else weights.get(name, 1.0)
        for position, key in enumerate(ranking, start=1):
            seen = ranks.setdefault(key, {})
            if name in seen:
                continue
            seen[name] = position
            first_seen.setdefault(key, len(first_seen))
            scores[key] = scores.get(key, 0.0) + weight / (k + position)
    # Ties: the key any retriever saw first wins, so fusion is deterministic.
    ordered = sorted(scores, key=lambda key: (-scores[key], first_seen[key]))
    if limit is not None:
        ordered = ordered[:limit]
    return [FusedHit(key, scores[key], dict(ranks[key])) for key in ordered]
