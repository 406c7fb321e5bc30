"""Dedupe, merge and contradiction resolution within a cube (pure: rows and vectors in, decisions out).

Only active plaintext memories with readable text take part, and only
within a *group*: the same cube, subject, memory type and visibility, so a
merge never mixes two people's content or widens who may read it.

- Exact duplicates: the same normalised text (case, spacing and punctuation
  aside). Every such set is merged.
- Near-duplicates: cosine similarity (all-MiniLM-L6-v2) at or above
  `merge_similarity` *and* the same details: the same numbers and the same
  negation. "Meeting on Monday at 10" and "... Tuesday at 3" are close in
  embedding space (0.95) but are not the same memory. Each new memory joins
  its single most similar partner; the components of those links are merged.
- A merge keeps the oldest member's id (a pinned one first), takes the
  newest member's content, and its event names every member: the fold
  writes lineage to each source version.
- Contradictions: two fact memories (`fact_types`) are versions of one fact
  when they carry the same key tag (`key:home_city`), or when their
  similarity is at or above `contradiction_similarity` and they are not
  near-duplicates (their details or wording differ). The more recent one
  (last change, then creation, then id) wins; the other is archived, never
  erased, and a pinned memory never loses.

Similarity is only computed for pairs involving a *new* memory (one whose
text has no vector yet): older pairs were compared by earlier runs.
"""

from __future__ import annotations

__all__ = [
    "DedupeRules",
    "normalise",
    "details",
    "group_key",
    "dedupe_group",
    "groups_of",
]

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipelines.lifecycle import Decision, MemoryRow

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_DIGIT = re.compile(r"\d")
_NOT = re.compile("n['\u2019]t\\b")  # "isn't", also with a typographic apostrophe
_NEGATIONS = frozenset(
    {"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot"}
)

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class DedupeRules:
    merge_similarity: float = 0.93
    contradiction_similarity: float = 0.85
    fact_types: frozenset[str] = frozenset({"fact", "preference", "profile"})
    fact_key_prefix: str = "key:"


def _words(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _WORD.findall(_NOT.sub(" not", folded))


def normalise(text: str) -> str:
    """The text exact-duplicate detection compares: words only, case-folded."""
    return " ".join(_words(text))


@functools.lru_cache(maxsize=65_536)
def details(text: str) -> tuple[frozenset[str], bool]:
    """What two near-duplicates must share: the numbers they state and whether they negate."""
    words = _words(text)
    numbers = frozenset(w for w in words if _DIGIT.search(w))
    negated = sum(w in _NEGATIONS for w in words) % 2 == 1
    return numbers, negated


def group_key(row: MemoryRow) -> tuple[str, str, str, str]:
    return (row.cube_id, row.subject_id or "", row.memory_type, row.visibility)


def _recency(row: MemoryRow) -> tuple[object, ...]:
    return (row.updated_at, row.created_at, row.memory_id)


def _age(row: MemoryRow) -> tuple[object, ...]:
    # The survivor of a merge: a pinned member first, then the oldest.
    return (not row.pinned, row.created_at, row.memory_id)


class _Components:
    def __init__(self, n: int) -> None:
        self._parent = list(range(n))

    def find(self, i: int) -> int:
        while self._parent[i] != i:
            self._parent[i] = self._parent[self._parent[i]]
            i = self._parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self._parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for i in range(len(self._parent)):
            out.setdefault(self.find(i), []).append(i)
        return [members for members in out.values() if len(members) > 1]


def _merge(rows: Sequence[MemoryRow], members: Sequence[int], reason: str) -> Decision:
    group = [rows[i] for i in members]
    survivor = min(group, key=_age)
    newest = max(group, key=_recency)
    sources = tuple(sorted(r.ref for r in group))
    return Decision(
        "merge",
        survivor.cube_id,
        survivor.memory_id,
        survivor.version,
        max(r.updated_at for r in group),
        reason,
        sources=sources,
        content_from=newest.memory_id,
    )


def dedupe_group(
    rows: Sequence[MemoryRow],
    vectors: Vectors | None,
    new: Sequence[bool],
    rules: DedupeRules,
) -> list[Decision]:
    """Merges and contradiction archivals for one group.

    `rows` have readable `text`; `vectors` (one unit row per memory, or None
    when no memory of the group is new) and `new` are aligned with `rows`.
    """
    n = len(rows)
    if n < 2:
        return []
    order = sorted(range(n), key=lambda i: _age(rows[i]))
    decisions: list[Decision] = []
    taken: set[int] = set()

    # Exact duplicates.
    by_text: dict[str, list[int]] = {}
    for i in order:
        text = rows[i].text
        assert text is not None
        by_text.setdefault(normalise(text), []).append(i)
    for members in by_text.values():
        if len(members) > 1:
            decisions.append(_merge(rows, members, f"exact duplicates ({len(members)})"))
            taken.update(members)

    similar: Vectors | None = None
    new_idx = [i for i in order if new[i] and i not in taken]
    if vectors is not None and new_idx:
        similar = vectors[new_idx] @ vectors.T
    facts = [rows[i].memory_type in rules.fact_types for i in range(n)]

    def info(i: int) -> tuple[frozenset[str], bool]:
        return details(rows[i].text or "")

    # Near-duplicates: each new memory links to its single best partner.
    links = _Components(n)
    best_sim: dict[int, float] = {}
    if similar is not None:
        for row_pos, i in enumerate(new_idx):
            best, best_value = -1, rules.merge_similarity
            for j in np.flatnonzero(similar[row_pos] >= rules.merge_similarity).tolist():
                if j == i or j in taken or info(i) != info(j):
                    continue
                value = float(similar[row_pos, j])
                if value > best_value or (value == best_value and (best < 0 or j < best)):
                    best, best_value = j, value
            if best >= 0:
                links.union(i, best)
                best_sim[i] = best_value
    for members in links.groups():
        top = max((best_sim.get(i, 0.0) for i in members), default=0.0)
        decisions.append(_merge(rows, sorted(members), f"near duplicates (similarity {top:.3f})"))
        taken.update(members)

    # Contradictions: versions of one fact, the most recent wins.
    losers: dict[int, tuple[int, str]] = {}

    def contest(a: int, b: int, why: str) -> None:
        winner, loser = (a, b) if _recency(rows[a]) > _recency(rows[b]) else (b, a)
        if rows[loser].pinned or loser in losers:
            return
        losers[loser] = (winner, why)

    by_key: dict[str, list[int]] = {}
    for i in range(n):
        if i in taken or not facts[i]:
            continue
        for tag in rows[i].tags:
            if tag.startswith(rules.fact_key_prefix) and len(tag) > len(rules.fact_key_prefix):
                by_key.setdefault(tag, []).append(i)
    for tag, members in sorted(by_key.items()):
        newest = max(members, key=lambda i: _recency(rows[i]))
        for i in sorted(members):
            if i != newest:
                contest(newest, i, f"same fact key {tag!r}")
    if similar is not None:
        for row_pos, i in enumerate(new_idx):
            if i in taken or not facts[i]:
                continue
            for j in np.flatnonzero(similar[row_pos] >= rules.contradiction_similarity).tolist():
                if j == i or j in taken or not facts[j]:
                    continue
                contest(i, j, f"similarity {float(similar[row_pos, j]):.3f} with differing content")
    for loser, (winner, why) in sorted(losers.items(), key=lambda item: rows[item[0]].memory_id):
        row = rows[loser]
        decisions.append(
            Decision(
                "contradiction",
                row.cube_id,
                row.memory_id,
                row.version,
                row.updated_at,
                f"contradicted by {rows[winner].memory_id} ({why})",
            )
        )
    return decisions


def groups_of(rows: Sequence[MemoryRow]) -> Mapping[tuple[str, str, str, str], list[int]]:
    """Indices of `rows` per dedupe group, in row order."""
    out: dict[tuple[str, str, str, str], list[int]] = {}
    for i, row in enumerate(rows):
        out.setdefault(group_key(row), []).append(i)
    return out
