"""Activation and parametric memory in serving: which KV cache and which LoRA adapter answer a chat.

The local generator can be handed two shelves, built by the entry point
from the training layer (`training.kv_registry.PrefixCacheRegistry` and
`training.registry.AdapterRegistry` fit the roles below):

- a `KVShelf` loads a cube's stored KV cache once and says whether it may be
  reused: made for the loaded base model, and every memory it encodes still
  live at the version it encodes. A chat whose first cube has such a cache
  starts its prompt with the cached prefix (the cache's own token ids) and
  computes only what follows; the memories the cache holds are not repeated
  in the context.
- an `AdapterShelf` holds each cube's champion adapter on the one base model
  and switches to the first cube's adapter for the request (or to none).

A KV cache holds the base model's keys and values; an adapter changes them.
So when an adapter answers, the cached prefix is recomputed under the
adapter (same token ids, no reuse). Every answer carries a `ParametricUse`:
which adapter answered (or why none did) and whether a cached prefix was
reused (or why not).

This module imports no other layer: the shelves are roles, and the
activation memory is found in the serving snapshot by its kind.
"""

from __future__ import annotations

__all__ = [
    "AdapterShelf",
    "AdapterUseInfo",
    "ActivationChoice",
    "KVShelf",
    "ParametricRequest",
    "ParametricUse",
    "StoredPrefix",
    "Shelves",
    "choose_activation",
]

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from memlake.model import Memory, MemoryKind
from serving.snapshot import ServingSnapshot


class StoredPrefix(Protocol):
    """A loaded KV cache (`training.kv_cache.PrefixCache` fits)."""

    @property
    def prefix_ids(self) -> tuple[int, ...]: ...

    @property
    def uri(self) -> str | None: ...

    def new_cache(self, config: Any, *, batch: int = 1) -> Any:
        """A fresh transformers cache over the stored tensors, for one request."""
        ...


class KVShelf(Protocol):
    def get(self, memory: Memory | None, live: Mapping[str, int]) -> tuple[Any, str | None]:
        """(a `StoredPrefix`, None) when the cube's cache may be reused, else (None, why not)."""
        ...


class AdapterUseInfo(Protocol):
    """What `AdapterShelf.use` yields (`training.registry.AdapterUse` fits)."""

    @property
    def used(self) -> bool: ...

    @property
    def model_uri(self) -> str | None: ...

    @property
    def reason(self) -> str | None: ...


class AdapterShelf(Protocol):
    @property
    def model(self) -> Any:
        """What to generate with inside `use` (the peft model once an adapter is loaded)."""
        ...

    def use(self, cube_id: str | None) -> AbstractContextManager[Any]:
        """Run a request with the cube's champion adapter active; yields an `AdapterUseInfo`."""
        ...


@dataclass(frozen=True, slots=True)
class Shelves:
    """What the local generator serves activation and parametric memory from (either may be off)."""

    kv: KVShelf | None = None
    adapters: AdapterShelf | None = None


@dataclass(frozen=True, slots=True)
class ParametricRequest:
    """What a chat asks of the local generator beyond its messages."""

    cube_id: str | None = None  # whose adapter answers
    prefix: StoredPrefix | None = None  # the KV cache the prompt starts with
    reuse_prefix: bool = True  # False: recompute the prefix (same ids), to compare or measure
    no_prefix_reason: str | None = None  # why there is no prefix, to report


@dataclass(frozen=True, slots=True)
class ParametricUse:
    """Which adapter answered and which cached prefix was reused; reported with every answer."""

    adapter: str | None = None  # models:/<name>/<version>
    adapter_reason: str | None = None  # why no adapter answered
    kv_cache: str | None = None  # artifact URI of the reused KV cache
    kv_reused_tokens: int = 0
    kv_reason: str | None = None  # why no cached prefix was reused

    @classmethod
    def describe(cls, use: ParametricUse | None) -> dict[str, Any]:
        """What an answer reports: `use`, or (answered elsewhere) that no adapter or cache was used."""
        if use is None:
            reason = "the answer came from a generator without local adapters or KV caches"
            use = cls(adapter_reason=reason, kv_reason=reason)
        return use.as_dict()

    @property
    def header(self) -> str:
        """The `X-Memlake-Adapter` header value: the adapter's model URI, or 'none'."""
        return self.adapter or "none"

    def as_dict(self) -> dict[str, Any]:
        return {
            "adapter": self.adapter,
            "adapter_reason": self.adapter_reason,
            "kv_cache": self.kv_cache,
            "kv_reused_tokens": self.kv_reused_tokens,
            "kv_reason": self.kv_reason,
        }


@dataclass(frozen=True, slots=True)
class ActivationChoice:
    """A cube's activation memory and the current versions of the memories it encodes.

    `memory` is None when the cube has no activation memory the caller may
    use; `reason` then says why. `live` maps each encoded memory that is
    still live to its current version (a changed or gone one makes the
    shelf refuse the cache).
    """

    cube_id: str
    memory: Memory | None
    live: Mapping[str, int]
    reason: str | None = None


def _activation_memory(memories: Mapping[str, Memory]) -> Memory | None:
    found = [
        m
        for m in memories.values()
        if m.kind is MemoryKind.ACTIVATION and m.status.is_live and m.artifact is not None
    ]
    # One KV cache per cube is the rule (a fixed memory id); the newest wins if there are more.
    return max(found, key=lambda m: (m.header.updated_at, m.memory_id), default=None)


def choose_activation(snapshot: ServingSnapshot, *, cube_id: str, principal: str) -> ActivationChoice:
    """The cube's KV-cache memory, if it may serve `principal`, with its sources' live versions."""
    shard = snapshot.shards.get(cube_id)
    if shard is None:
        return ActivationChoice(cube_id, None, {}, "the cube is not in the snapshot")
    memory = _activation_memory(shard.memories)
    if memory is None:
        return ActivationChoice(cube_id, None, {}, "the cube has no KV cache")
    if not memory.readable_by(principal, shard.cube.acl):
        return ActivationChoice(cube_id, None, {}, "the caller may not read the cube's KV cache")
    live: dict[str, int] = {}
    for ref in memory.header.lineage:
        source = shard.memories.get(ref.memory_id)
        if source is None or not source.status.is_live:
            continue
        # A cache holds its memories' text: it may only answer a caller who may read each of them.
        if not source.readable_by(principal, shard.cube.acl):
            return ActivationChoice(
                cube_id, None, {}, f"the caller may not read memory {ref.memory_id} the cache encodes"
            )
        live[ref.memory_id] = source.version
    return ActivationChoice(cube_id, memory, live)
