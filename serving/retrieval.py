"""Hybrid retrieval over one snapshot: dense (Milvus) + lexical (BM25), fused by RRF.

Each retriever ranks candidates from the cubes the caller may read; both
lists are checked against the snapshot (the version must be the one the
snapshot holds, the memory must be searchable, unexpired, readable by the
caller at memory level and match the filter) before fusion, so ranks count
only memories the caller could get. The snapshot decides; the index only
proposes.
"""

from __future__ import annotations

__all__ = ["SearchHit", "SearchResult", "HybridRetriever", "RetrievalMode"]

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from memlake.model import Memory
from serving.embeddings import Embedder
from serving.filters import MemoryFilter
from serving.fusion import reciprocal_rank_fusion
from serving.snapshot import ServingSnapshot
from serving.vector_index import IndexKey, VectorIndex

RetrievalMode = Literal["hybrid", "dense", "lexical"]


@dataclass(frozen=True, slots=True)
class SearchHit:
    memory: Memory
    text: str
    score: float  # fused (RRF) score: decides the order
    relevance: float  # in [0, 1]: mean of max(0, cosine) and BM25 / best BM25 of this search
    similarity: float | None = None  # cosine similarity, when the dense retriever found it
    lexical_score: float | None = None  # BM25, when the lexical retriever found it
    ranks: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SearchResult:
    hits: tuple[SearchHit, ...]
    snapshot_version: int
    timings_ms: dict[str, float]


class HybridRetriever:
    def __init__(
        self,
        index: VectorIndex,
        embedder: Embedder,
        *,
        candidates: int = 50,
        rrf_k: float = 60.0,
        dense_weight: float = 1.0,
        lexical_weight: float = 1.0,
    ) -> None:
        self._index = index
        self._embedder = embedder
        self._candidates = candidates
        self._rrf_k = rrf_k
        self._weights = {"dense": dense_weight, "lexical": lexical_weight}

    def _eligible(
        self,
        snapshot: ServingSnapshot,
        key: IndexKey,
        *,
        principal: str,
        memory_filter: MemoryFilter,
        now: datetime,
    ) -> Memory | None:
        memory = snapshot.live(key)
        if memory is None or not memory_filter.matches(memory, now=now):
            return None
        shard = snapshot.shards[key.cube_id]
        return memory if memory.readable_by(principal, shard.cube.acl) else None

    def search(
        self,
        snapshot: ServingSnapshot,
        *,
        principal: str,
        cube_ids: Sequence[str],
        query: str,
        top_k: int,
        memory_filter: MemoryFilter,
        now: datetime,
        mode: RetrievalMode = "hybrid",
    ) -> SearchResult:
        timings: dict[str, float] = {}
        wanted = max(self._candidates, top_k)
        cubes = [c for c in dict.fromkeys(cube_ids) if c in snapshot.shards]
        rankings: dict[str, list[IndexKey]] = {}
        similarity: dict[IndexKey, float] = {}
        lexical: dict[IndexKey, float] = {}

        def eligible(key: IndexKey) -> bool:
            found = self._eligible(snapshot, key, principal=principal, memory_filter=memory_filter, now=now)
            return found is not None

        if mode in ("hybrid", "dense") and cubes:
            t0 = time.perf_counter()
            vector = self._embedder.embed_query(query)
            t1 = time.perf_counter()
            hits = self._index.search(
                vector, cube_ids=cubes, expression=memory_filter.milvus_expression(cubes), limit=wanted
            )
            t2 = time.perf_counter()
            ranking = []
            for hit in hits:
                if hit.key not in similarity and eligible(hit.key):
                    similarity[hit.key] = hit.similarity
                    ranking.append(hit.key)
            rankings["dense"] = ranking
            timings["embed"] = (t1 - t0) * 1000
            timings["dense"] = (t2 - t1) * 1000
        if mode in ("hybrid", "lexical") and cubes:
            t0 = time.perf_counter()
            merged = []
            for cube_id in cubes:
                merged.extend(snapshot.shards[cube_id].lexical.search(query, limit=wanted))
            merged.sort(key=lambda h: -h.score)
            ranking = []
            for lexical_hit in merged:
                if len(ranking) >= wanted:
                    break
                if lexical_hit.key not in lexical and eligible(lexical_hit.key):
                    lexical[lexical_hit.key] = lexical_hit.score
                    ranking.append(lexical_hit.key)
            rankings["lexical"] = ranking
            timings["lexical"] = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        weights = {name: self._weights[name] for name in rankings}
        fused = reciprocal_rank_fusion(rankings, weights=weights, k=self._rrf_k, limit=top_k)
        best_lexical = max(lexical.values(), default=0.0) or 1.0

        def relevance(key: IndexKey) -> float:
            # RRF scores only encode ranks (1/61 and 1/62 are nearly equal); the scheduler
            # needs to know how close a memory is, so relevance comes from the raw scores.
            parts = []
            if "dense" in rankings:
                parts.append(max(0.0, similarity.get(key, 0.0)))
            if "lexical" in rankings:
                parts.append(lexical.get(key, 0.0) / best_lexical)
            return min(1.0, sum(parts) / len(parts)) if parts else 0.0

        out = []
        for item in fused:
            shard = snapshot.shards[item.key.cube_id]
            memory = shard.memories[item.key.memory_id]
            out.append(
                SearchHit(
                    memory=memory,
                    text=shard.texts[item.key.memory_id],
                    score=item.score,
                    relevance=relevance(item.key),
                    similarity=similarity.get(item.key),
                    lexical_score=lexical.get(item.key),
                    ranks=dict(item.ranks),
                )
            )
        timings["fuse"] = (time.perf_counter() - t0) * 1000
        return SearchResult(tuple(out), snapshot.version, timings)
