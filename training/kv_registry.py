"""Serving's shelf of loaded KV caches: load each cube's cache once, reuse it while it is fresh.

`get(memory, live)` takes the cube's activation memory as the serving
snapshot has it and the current versions of the cube's live memories; it
returns the loaded cache, or None with the reason it may not be used (made
for another base model, a source memory changed or went away, files damaged).
Caches stay loaded up to `max_bytes`, least recently used dropped first. The
shelf is safe to share between request threads: the cached tensors are
read-only and each request wraps them in its own `DynamicCache`.
"""

from __future__ import annotations

__all__ = ["PrefixCacheRegistry"]

import threading
from collections import OrderedDict
from collections.abc import Mapping

from memlake.errors import ArtifactError, StaleArtifactError
from memlake.model import Memory, MemoryKind
from training.artifacts import ArtifactStore
from training.base_model import BaseLLM
from training.kv_cache import PrefixCache, load_prefix_cache, staleness


class PrefixCacheRegistry:
    """Loaded KV caches by artifact URI. The constructor does no I/O."""

    def __init__(self, base: BaseLLM, store: ArtifactStore, *, max_bytes: int = 2 * 2**30) -> None:
        self._base = base
        self._store = store
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._caches: OrderedDict[str, PrefixCache] = OrderedDict()
        self._refused: dict[str, str] = {}

    @property
    def loaded_bytes(self) -> int:
        with self._lock:
            return sum(c.nbytes for c in self._caches.values())

    def get(self, memory: Memory | None, live: Mapping[str, int]) -> tuple[PrefixCache | None, str | None]:
        """(cache, None) when the cube's cache may be reused, else (None, why not)."""
        if memory is None or memory.kind is not MemoryKind.ACTIVATION or memory.artifact is None:
            return None, "the cube has no KV cache"
        ref = memory.artifact
        if ref.base_model_fingerprint != self._base.fingerprint_id:
            return (
                None,
                f"made for base model {ref.base_model_fingerprint}, loaded is {self._base.fingerprint_id}",
            )
        with self._lock:
            if ref.uri in self._refused:
                return None, self._refused[ref.uri]
            cache = self._caches.get(ref.uri)
            if cache is None:
                try:
                    cache = load_prefix_cache(ref, self._store, base=self._base)
                except (ArtifactError, StaleArtifactError) as e:
                    self._refused[ref.uri] = str(e)
                    return None, str(e)
                self._caches[ref.uri] = cache
                self._evict()
            self._caches.move_to_end(ref.uri)
        reason = staleness(cache.manifest, fingerprint=self._base.fingerprint_id, live=live)
        return (None, reason) if reason is not None else (cache, None)

    def _evict(self) -> None:
        total = sum(c.nbytes for c in self._caches.values())
        while len(self._caches) > 1 and total > self._max_bytes:
            _, dropped = self._caches.popitem(last=False)
            total -= dropped.nbytes
