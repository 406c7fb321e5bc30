"""Plaintext ► activation: a cube's chosen memories as a precomputed KV cache.

The cache holds the keys and values of every layer for the prompt prefix
that lists the memories (see `training.prompts`), computed once with the
base model, stored as safetensors with a manifest: the base model's
fingerprint and the memory versions it encodes. Serving loads it, checks it
is still fresh (same fingerprint, every source memory still live at the same
version) and generates from the question onwards, so the prefix is never
recomputed.

A stored cache is immutable; generation appends to a cache, so each request
gets its own `DynamicCache` around the stored tensors (`new_cache`). The
tensors themselves are shared: a layer grows by concatenation, which leaves
the originals untouched.
"""

from __future__ import annotations

__all__ = [
    "KV_FORMAT",
    "KVManifest",
    "PrefixCache",
    "Generation",
    "build_prefix_cache",
    "save_prefix_cache",
    "load_prefix_cache",
    "prompt_for",
    "generate",
    "staleness",
]

import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memlake.errors import ArtifactError, StaleArtifactError
from memlake.ids import uuid7
from memlake.model import ArtifactRef, SourceRef, utcnow
from training.artifacts import ArtifactStore, artifact_sha256, path_component
from training.base_model import BaseLLM
from training.prompts import PromptParts, encode_prompt
from training.selection import HotMemory

if TYPE_CHECKING:
    import torch

KV_FORMAT = "safetensors-kv/1"
_TENSORS = "cache.safetensors"
_MANIFEST = "manifest.json"


@dataclass(frozen=True, slots=True)
class KVManifest:
    cube_id: str
    base_model_fingerprint: str
    fingerprint: Mapping[str, str]
    sources: tuple[SourceRef, ...]
    prefix_tokens: int
    layers: int
    dtype: str
    created_at: str
    format: str = KV_FORMAT

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": self.format,
                "cube_id": self.cube_id,
                "base_model_fingerprint": self.base_model_fingerprint,
                "fingerprint": dict(self.fingerprint),
                "sources": [s.model_dump() for s in self.sources],
                "prefix_tokens": self.prefix_tokens,
                "layers": self.layers,
                "dtype": self.dtype,
                "created_at": self.created_at,
            },
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> KVManifest:
        data = json.loads(text)
        return cls(
            cube_id=data["cube_id"],
            base_model_fingerprint=data["base_model_fingerprint"],
            fingerprint=data["fingerprint"],
            sources=tuple(SourceRef.model_validate(s) for s in data["sources"]),
            prefix_tokens=int(data["prefix_tokens"]),
            layers=int(data["layers"]),
            dtype=data["dtype"],
            created_at=data["created_at"],
            format=data["format"],
        )


@dataclass(frozen=True)
class PrefixCache:
    """The stored keys/values of a prompt prefix, shared read-only between requests."""

    manifest: KVManifest
    prefix_ids: tuple[int, ...]
    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    uri: str | None = None

    def new_cache(self, config: Any, *, batch: int = 1) -> Any:
        """A fresh `DynamicCache` over the stored tensors, for one request (generation mutates it)."""
        from transformers import DynamicCache

        layers = self.layers
        if batch > 1:
            layers = tuple((k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in layers)
        return DynamicCache(ddp_cache_data=layers, config=config)

    @property
    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.layers)


@dataclass(frozen=True, slots=True)
class Generation:
    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    reused_tokens: int  # prompt tokens read from a KV cache instead of computed
    seconds: float


def staleness(manifest: KVManifest, *, fingerprint: str, live: Mapping[str, int] | None = None) -> str | None:
    """Why a cache may not be reused (None: it may). `live` maps memory ids to current versions."""
    if manifest.format != KV_FORMAT:
        return f"format {manifest.format} is not {KV_FORMAT}"
    if manifest.base_model_fingerprint != fingerprint:
        return f"made for base model {manifest.base_model_fingerprint}, loaded is {fingerprint}"
    if live is not None:
        for ref in manifest.sources:
            current = live.get(ref.memory_id)
            if current is None:
                return f"memory {ref.memory_id} is no longer live"
            if current != ref.version:
                return f"memory {ref.memory_id} is at version {current}, the cache has version {ref.version}"
    return None


def build_prefix_cache(base: BaseLLM, *, cube_id: str, memories: Sequence[HotMemory]) -> PrefixCache:
    """Run the prefix that lists `memories` through the base model once and keep its keys/values."""
    import torch

    parts = encode_prompt(base.tokenizer, question="", memories=[m.text for m in memories])
    ids = torch.tensor([parts.prefix_ids], dtype=torch.long, device=base.device)
    with torch.no_grad():
        out = base.model(input_ids=ids, use_cache=True)
    cache = out.past_key_values
    layers = tuple((layer.keys.detach(), layer.values.detach()) for layer in cache.layers)
    manifest = KVManifest(
        cube_id=cube_id,
        base_model_fingerprint=base.fingerprint_id,
        fingerprint=base.fingerprint.as_dict(),
        sources=tuple(m.ref for m in memories),
        prefix_tokens=len(parts.prefix_ids),
        layers=len(layers),
        dtype=base.fingerprint.dtype,
        created_at=utcnow().isoformat(),
    )
    return PrefixCache(manifest=manifest, prefix_ids=parts.prefix_ids, layers=layers)


def save_prefix_cache(cache: PrefixCache, store: ArtifactStore) -> ArtifactRef:
    """Write the cache as one safetensors file plus its manifest, under a new key."""
    import torch
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {"prefix_ids": torch.tensor(cache.prefix_ids, dtype=torch.long)}
    for i, (k, v) in enumerate(cache.layers):
        tensors[f"layers.{i}.keys"] = k.contiguous().cpu()
        tensors[f"layers.{i}.values"] = v.contiguous().cpu()
    with tempfile.TemporaryDirectory(prefix="memlake-kv-") as tmp:
        folder = Path(tmp)
        save_file(tensors, str(folder / _TENSORS), metadata={"format": KV_FORMAT})
        (folder / _MANIFEST).write_text(cache.manifest.to_json())
        sha = artifact_sha256(folder)
        uri = store.put(folder, f"kv/{path_component(cache.manifest.cube_id)}/{uuid7()}")
    return ArtifactRef(
        uri=uri, format=KV_FORMAT, base_model_fingerprint=cache.manifest.base_model_fingerprint, sha256=sha
    )


def load_prefix_cache(
    ref: ArtifactRef | str, store: ArtifactStore, *, base: BaseLLM, verify: bool = True
) -> PrefixCache:
    """Load a stored cache onto the base model's device; refuse one made for another model."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    uri = ref if isinstance(ref, str) else ref.uri
    folder = store.fetch(uri)
    if verify and isinstance(ref, ArtifactRef) and ref.sha256 and artifact_sha256(folder) != ref.sha256:
        raise ArtifactError(uri, "content does not match the sha256 its event recorded")
    try:
        manifest = KVManifest.from_json((folder / _MANIFEST).read_text())
        tensors = load_file(str(folder / _TENSORS), device=str(base.device))
    except (OSError, KeyError, ValueError, SafetensorError) as e:
        raise ArtifactError(uri, f"unreadable KV cache: {e}") from e
    reason = staleness(manifest, fingerprint=base.fingerprint_id)
    if reason is not None:
        raise StaleArtifactError(uri, reason)
    layers = tuple(
        (tensors[f"layers.{i}.keys"], tensors[f"layers.{i}.values"]) for i in range(manifest.layers)
    )
    prefix_ids = tuple(int(i) for i in tensors["prefix_ids"].tolist())
    return PrefixCache(manifest=manifest, prefix_ids=prefix_ids, layers=layers, uri=uri)


def prompt_for(
    cache: PrefixCache, tokenizer: Any, *, question: str, context: Sequence[str] = ()
) -> PromptParts:
    """The prompt a cached prefix continues into: the same ids a from-scratch prompt would have."""
    suffix = encode_prompt(tokenizer, question=question, context=context).suffix_ids
    return PromptParts(cache.prefix_ids, suffix)


def generate(
    base: BaseLLM,
    parts: PromptParts,
    *,
    prefix_cache: PrefixCache | None = None,
    max_new_tokens: int = 64,
    model: Any = None,
) -> Generation:
    """Greedy generation of an answer, reusing `prefix_cache` for the prompt's prefix if given.

    `model` defaults to the base model; pass a peft model only with no
    prefix cache (adapters change the keys and values, so a base-model cache
    does not apply to them).
    """
    import torch

    if prefix_cache is not None:
        if model is not None and model is not base.model:
            raise StaleArtifactError(
                prefix_cache.uri or "<memory>", "a base-model KV cache cannot serve an adapter"
            )
        if tuple(parts.prefix_ids) != prefix_cache.prefix_ids:
            raise StaleArtifactError(
                prefix_cache.uri or "<memory>", "the prompt's prefix is not the cached one"
            )
        if not parts.suffix_ids:
            raise ValueError("a prompt continuing a cached prefix needs at least one token of its own")
    runner = model if model is not None else base.model
    ids = torch.tensor([parts.ids], dtype=torch.long, device=base.device)
    kwargs: dict[str, Any] = {}
    if prefix_cache is not None:
        kwargs["past_key_values"] = prefix_cache.new_cache(base.model.config)
    started = time.perf_counter()
    with torch.no_grad():
        out = runner.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=base.eos_token_ids,
            pad_token_id=base.tokenizer.pad_token_id,
            **kwargs,
        )
    seconds = time.perf_counter() - started
    new = tuple(int(t) for t in out[0, ids.shape[1] :].tolist())
    return Generation(
        text=base.tokenizer.decode(list(new), skip_special_tokens=True).strip(),
        token_ids=new,
        prompt_tokens=ids.shape[1],
        reused_tokens=len(prefix_cache.prefix_ids) if prefix_cache is not None else 0,
        seconds=seconds,
    )
