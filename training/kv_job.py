"""The KV-cache job: for each cube, cache the prefix of its pinned and hot memories.

A cube whose current cache already encodes the same memory versions for the
same base model is left alone, so running the job twice emits nothing the
second time. Otherwise a new cache is stored and `memory.transformed`
(plaintext ► activation) is emitted for the cube's `memlake.kv-cache` memory.
"""

from __future__ import annotations

__all__ = ["KVJobResult", "fit_to_budget", "current_artifact_memory", "build_cube_cache"]

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow.compute as pc

from lake.rows import memory_from_json
from lake.snapshot import Snapshot
from memlake.events import Transformation
from memlake.model import ArtifactRef, Memory
from memlake.settings import TrainingSettings
from training.artifacts import ArtifactStore
from training.base_model import BaseLLM
from training.kv_cache import build_prefix_cache, save_prefix_cache
from training.lineage import KV_MEMORY_ID, EventSink, transformed_event
from training.prompts import encode_prompt
from training.selection import HotMemory, select_memories


@dataclass(frozen=True)
class KVJobResult:
    cube_id: str
    built: bool
    reason: str
    artifact: ArtifactRef | None = None
    memories: int = 0
    prefix_tokens: int = 0
    seconds: float = 0.0


def fit_to_budget(tokenizer: Any, memories: Sequence[HotMemory], max_tokens: int) -> list[HotMemory]:
    """The longest head of `memories` (already in priority order) whose prefix fits `max_tokens`."""

    def size(n: int) -> int:
        return len(encode_prompt(tokenizer, question="", memories=[m.text for m in memories[:n]]).prefix_ids)

    # The prefix grows with every memory added: binary search for the longest head that fits.
    low, high = 0, len(memories)
    while low < high:
        mid = (low + high + 1) // 2
        if size(mid) <= max_tokens:
            low = mid
        else:
            high = mid - 1
    return list(memories[:low])


def current_artifact_memory(snapshot: Snapshot, cube_id: str, memory_id: str) -> Memory | None:
    """The cube's live artifact memory (KV cache or adapter) as the snapshot has it."""
    table = snapshot.read(
        "memories",
        columns=["memory_json"],
        filter=(pc.field("cube_id") == cube_id)
        & (pc.field("memory_id") == memory_id)
        & (pc.field("status") == "active"),
    )
    values = table.column("memory_json").to_pylist()
    return memory_from_json(values[0]) if values else None


def build_cube_cache(
    *,
    base: BaseLLM,
    snapshot: Snapshot,
    settings: TrainingSettings,
    store: ArtifactStore,
    sink: EventSink,
    cube_id: str,
    now: datetime,
) -> KVJobResult:
    import time

    selection = select_memories(snapshot, settings, now=now, cube_id=cube_id).get(cube_id)
    if selection is None or not selection.memories:
        return KVJobResult(cube_id, False, "no pinned or hot plaintext memories")
    memories = fit_to_budget(base.tokenizer, selection.memories, settings.kv_max_tokens)
    if not memories:
        return KVJobResult(cube_id, False, f"no memory fits in {settings.kv_max_tokens} tokens")
    sources = tuple(m.ref for m in memories)
    current = current_artifact_memory(snapshot, cube_id, KV_MEMORY_ID)
    if (
        current is not None
        and current.artifact is not None
        and current.artifact.base_model_fingerprint == base.fingerprint_id
        and tuple(current.header.lineage) == sources
    ):
        return KVJobResult(cube_id, False, "the current cache is fresh", current.artifact, len(memories))
    started = time.perf_counter()
    cache = build_prefix_cache(base, cube_id=cube_id, memories=memories)
    ref = save_prefix_cache(cache, store)
    sink.send(
        transformed_event(
            cube_id=cube_id,
            memory_id=KV_MEMORY_ID,
            transformation=Transformation.PLAINTEXT_TO_ACTIVATION,
            sources=sources,
            artifact=ref,
            memory_type="kv-cache",
            tags=("kv-cache",),
            job="kv-cache",
            ref=f"lake@{selection.snapshot_watermark}",
        )
    )
    return KVJobResult(
        cube_id,
        True,
        "built",
        ref,
        len(memories),
        cache.manifest.prefix_tokens,
        time.perf_counter() - started,
    )
