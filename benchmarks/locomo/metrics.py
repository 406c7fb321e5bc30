"""Retrieval metrics: evidence recall@k at turn and session level, per category.

Turn level: the share of a question's evidence turns found among the top k
retrieved turns. Session level: the share of its evidence turns whose session
(`D<N>` prefix) is the session of one of the top k retrieved turns (LoCoMo's
own `recall_acc` for session retrieval). Questions without resolvable evidence
are left out of recall (counted in `skipped`). "overall" means categories 1-4;
category 5 (adversarial) is always reported apart.
"""

from __future__ import annotations

__all__ = [
    "KS",
    "turn_recall",
    "session_recall",
    "RecallScores",
    "evaluate_retrieval",
    "percentile",
]

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from benchmarks.locomo.dataset import SCORED_CATEGORIES, Question, session_of

KS: tuple[int, ...] = (1, 5, 10, 20)


def turn_recall(evidence: Sequence[str], ranked: Sequence[str], k: int) -> float:
    if not evidence:
        raise ValueError("recall needs at least one evidence turn")
    top = set(ranked[:k])
    return sum(1 for e in evidence if e in top) / len(evidence)


def session_recall(evidence: Sequence[str], ranked: Sequence[str], k: int) -> float:
    if not evidence:
        raise ValueError("recall needs at least one evidence turn")
    sessions = {session_of(r) for r in ranked[:k]}
    return sum(1 for e in evidence if session_of(e) in sessions) / len(evidence)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


@dataclass(frozen=True)
class RecallScores:
    """Mean recall per level ("turn", "session"), group ("overall", "1".."5") and k."""

    ks: tuple[int, ...]
    # level -> group -> k -> mean recall
    means: dict[str, dict[str, dict[int, float]]]
    counts: dict[str, int]
    skipped: int = 0
    per_question: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)

    def get(self, level: str, group: str, k: int) -> float:
        return self.means[level][group][k]

    def as_dict(self) -> dict[str, object]:
        return {
            "ks": list(self.ks),
            "counts": dict(self.counts),
            "skipped_without_evidence": self.skipped,
            **{
                level: {group: {str(k): v for k, v in by_k.items()} for group, by_k in groups.items()}
                for level, groups in self.means.items()
            },
        }


def evaluate_retrieval(
    questions: Sequence[Question],
    ranked: Mapping[str, Sequence[str]],
    *,
    ks: Sequence[int] = KS,
) -> RecallScores:
    """Score one retriever's ranked dialogue ids (`ranked[qid]`) on these questions."""
    ks = tuple(ks)
    groups: dict[str, list[Question]] = {"overall": []}
    for category in (*SCORED_CATEGORIES, 5):
        groups[str(category)] = []
    skipped = 0
    per_question: dict[str, dict[str, dict[int, float]]] = {}
    for q in questions:
        if not q.evidence:
            skipped += 1
            continue
        if q.qid not in ranked:
            raise KeyError(f"no ranking for question {q.qid}")
        hits = ranked[q.qid]
        per_question[q.qid] = {
            "turn": {k: turn_recall(q.evidence, hits, k) for k in ks},
            "session": {k: session_recall(q.evidence, hits, k) for k in ks},
        }
        groups.setdefault(str(q.category), []).append(q)
        if q.category in SCORED_CATEGORIES:
            groups["overall"].append(q)
    means = {
        level: {
            group: {k: _mean([per_question[q.qid][level][k] for q in members]) for k in ks}
            for group, members in groups.items()
        }
        for level in ("turn", "session")
    }
    counts = {group: len(members) for group, members in groups.items()}
    return RecallScores(ks=ks, means=means, counts=counts, skipped=skipped, per_question=per_question)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation, as numpy's default."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
